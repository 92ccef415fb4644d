"""The ``voe`` console script: one subcommand per role and per question users ask.

Subcommands come from voe.cli's modules, then from the ``voe.commands`` entry point group
(each entry point a function that takes ``command`` and adds its subcommands; the demo's
``voe run`` and ``voe demo-airline`` arrive this way).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from voe import __version__
from voe.cli import actions, questions, roles
from voe.cli.common import EXIT_USAGE, USER_ERRORS, Command
from voe.web.client import ControlError

# A listing whose reader closed the pipe exits as a program killed by SIGPIPE would.
EXIT_BROKEN_PIPE = 141
COMMANDS_GROUP = "voe.commands"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="voe", description="Collect flight fares at scale: master, workers and sink.")
    parser.add_argument("--version", action="version", version=f"voe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int],
                help_text: str) -> argparse.ArgumentParser:
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(handler=handler, called=sub_parser.prog)
        return sub_parser

    _add_plugin_commands(command)
    for module in (roles, questions, actions):
        module.add_commands(command)
    return parser


def _add_plugin_commands(command: Command) -> None:
    """Add the subcommands of the ``voe.commands`` entry points; one that fails is skipped."""
    for entry_point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda found: found.name):
        try:
            entry_point.load()(command)
        except Exception as error:  # a broken plugin must not take the whole CLI down
            print(f"voe: commands {entry_point.name}={entry_point.value} skipped: "
                  f"{type(error).__name__}: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voe`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        print(f"{args.called}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ControlError as error:  # no master to ask, or it refused: status 1, not a usage one
        print(f"{args.called}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`voe failed | head`): not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
