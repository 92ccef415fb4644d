"""`python setup_instances.py master|sink|workers N`: the original's EC2 launcher, made safe.

The same as `voe cloud up`: tagged instances of this cluster (VOE_CLUSTER), voe deployed
over SSH, each machine's .env written from the cluster's tags, the role run as a service.
"""

import argparse
import sys

from voe.cloud.arguments import add_up_arguments


def main(argv: list[str] | None = None) -> int:
    """Parse the original's arguments and launch and deploy through voe.cloud."""
    parser = argparse.ArgumentParser(
        prog="setup_instances.py",
        description="Launch (or reuse) and deploy voe's master, sink or N workers on EC2 "
                    "(the same as `voe cloud up`).")
    add_up_arguments(parser)
    args = parser.parse_args(argv)
    from voe.cloud.commands import run, up
    from voe.settings import load

    return run("setup_instances.py",
               lambda: up(load(), args.role, args.count, args.plan, args.set))


if __name__ == "__main__":
    sys.exit(main())
