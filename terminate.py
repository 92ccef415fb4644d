"""`python terminate.py [--yes]`: the original's teardown, which ended every instance in the region.

This one ends only the instances tagged with this cluster (VOE_CLUSTER), after showing
them; the same as `voe cloud down`.
"""

import argparse
import sys

from voe.cloud.arguments import add_down_arguments


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and terminate this cluster's instances through voe.cloud."""
    parser = argparse.ArgumentParser(
        prog="terminate.py",
        description="Terminate the instances of this voe cluster (VOE_CLUSTER) and only "
                    "those, after showing them (the same as `voe cloud down`).")
    add_down_arguments(parser)
    args = parser.parse_args(argv)
    from voe.cloud.commands import down, run
    from voe.settings import load

    return run("terminate.py", lambda: down(load(), args.yes))


if __name__ == "__main__":
    sys.exit(main())
