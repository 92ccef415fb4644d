"""What every ``voe`` command shares: the usage error, settings and plan loading, logs,
keys and the printing of rows (the argument types are in :mod:`voe.cli.types`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from voe.master.ledger import LedgerError
from voe.settings import Settings, SettingsError, load
from voe.store.base import StoreError

EXIT_USAGE = 2

# How a module adds a subcommand: name, handler and help text in, its parser out.
Command = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


class UsageError(Exception):
    """A mistake in how voe was called or configured: one line, exit status 2."""


# What a command reports in one line with exit status 2: a wrong call, or a ledger or a
# store that cannot be opened or read (a wrong path or URL, a newer schema, ...).
USER_ERRORS = (UsageError, LedgerError, StoreError)


def user_settings() -> Settings:
    """The settings, or a usage error saying which one is wrong."""
    try:
        return load()
    except SettingsError as error:
        raise UsageError(str(error)) from None


def user_plan(path: str | None, settings: Settings) -> Any:
    """The plan at ``path`` (else VOE_PLAN, else the demo plan), or a usage error."""
    from voe.backends import InstalledBackends
    from voe.master.plan import PlanError, load_plan

    try:
        return load_plan(path or settings.voe_plan or None, InstalledBackends())
    except PlanError as error:
        raise UsageError(str(error)) from None


def start_logs(role: str, settings: Settings, console: bool) -> None:
    """Log a role to its file in the data dir, and to the console unless told not to."""
    from voe import logs

    logs.setup(role, settings.data_dir, settings.voe_log_level, console)


def require_keys(settings: Settings, role: str) -> None:
    """Fail with a usage error unless the role's CURVE keys are in place."""
    from voe.keys import KeysError, require

    try:
        require(settings, role)
    except KeysError as error:
        raise UsageError(str(error)) from None


def role_options(parser: argparse.ArgumentParser) -> None:
    """Options every long-running role takes."""
    parser.add_argument("--no-console", action="store_true",
                        help="log only to the role's log file in the data dir")


def print_rows(rows: list[dict[str, Any]], as_json: bool, none: str,
               line: Callable[[dict[str, Any]], str]) -> int:
    """Print ``rows`` as JSON, or ``line(row)`` for each (``none`` when there are none).

    Returns the exit status, 0.
    """
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(none)
    for row in rows:
        print(line(row))
    return 0
