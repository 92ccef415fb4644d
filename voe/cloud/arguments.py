"""The arguments of ``voe cloud`` and of the original's ``setup_instances.py`` and ``terminate.py``.

Only argparse and its types here, so building the parser never imports boto3 or paramiko.
"""

from __future__ import annotations

import argparse

from voe.cli.types import add_name_values, at_least_one


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    """``master|sink|workers [N] [--plan FILE] [--set NAME=VALUE]``."""
    parser.add_argument("role", choices=("master", "sink", "workers"),
                        help="what to launch and deploy (master first, then sink, then workers)")
    parser.add_argument("count", nargs="?", type=at_least_one, default=None,
                        help="with workers: how many workers the cluster should have (1)")
    parser.add_argument("--plan", metavar="FILE",
                        help="with master: collection plan uploaded to the master (its VOE_PLAN)")
    add_name_values(parser, "--set", "a setting written into the machines' .env (repeatable), "
                                     "e.g. VOE_CONCURRENCY=32")


def add_down_arguments(parser: argparse.ArgumentParser) -> None:
    """``[--yes]``."""
    parser.add_argument("--yes", action="store_true",
                        help="terminate without asking (needed when not at a terminal)")


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """``[--json]``."""
    parser.add_argument("--json", action="store_true", help="print JSON")


def add_cloud_subcommands(parser: argparse.ArgumentParser) -> None:
    """``up``, ``down`` and ``status`` under ``voe cloud``."""
    actions = parser.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up", help="launch and deploy the master, the sink or workers",
        description="Launch (or reuse) tagged EC2 instances of this cluster (VOE_CLUSTER), "
                    "deploy voe to them over SSH, write their .env and start the role as a "
                    "service. `workers N` brings the cluster to N workers.")
    add_up_arguments(up)
    down = actions.add_parser(
        "down", help="terminate this cluster's instances (and only those)",
        description="List the instances tagged with this cluster, then terminate them and "
                    "delete the cluster's security group. Untagged instances are never touched.")
    add_down_arguments(down)
    status = actions.add_parser(
        "status", help="list this cluster's machines",
        description="List this cluster's machines: role, state and addresses.")
    add_status_arguments(status)
