"""`python setup_instances.py master|sink|workers N`: the original's EC2 launcher.

The safe fleet tooling (tagged clusters, SSH deploy, no hand-copied addresses) is
not built yet; this script says so instead of doing what the 2014 one did.
"""

import argparse
import sys

NOT_YET = ("voe: the EC2 fleet tooling is not built yet (it is the next planned work). "
           "Run everything on this machine with `voe run`, or start `voe master`, "
           "`voe sink` and `voe worker` by hand on your machines with MASTER_IP and SINK_IP set.")


def main() -> int:
    """Parse the original's arguments and explain that the fleet tooling is not ready."""
    parser = argparse.ArgumentParser(
        prog="setup_instances.py",
        description="Launch voe's master, sink or N workers on EC2 (not built yet).")
    parser.add_argument("role", choices=("master", "sink", "workers"))
    parser.add_argument("count", nargs="?", type=int, default=1,
                        help="how many workers (with `workers`)")
    parser.parse_args()
    print(NOT_YET, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
