"""`python terminate.py`: the original's teardown, which destroyed every instance in the region.

voe will only ever terminate the instances of its own cluster, after showing them.
Until the fleet tooling lands this script terminates nothing and says so.
"""

import argparse
import sys

from setup_instances import NOT_YET


def main() -> int:
    """Parse the arguments and explain that the fleet tooling is not ready."""
    parser = argparse.ArgumentParser(
        prog="terminate.py",
        description="Terminate the instances of this voe cluster only (not built yet; "
                    "terminates nothing).")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.parse_args()
    print(NOT_YET, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
