"""The argparse types and option kinds of voe's commands, shared by ``voe`` and the
original's scripts.

Light on purpose: ``setup_instances.py`` builds its parser from these without importing
boto3 or paramiko.
"""

from __future__ import annotations

import argparse

from voe.fields import is_label


def worker_name(text: str) -> str:
    """A worker's name: shown in logs and on terminals, so printable and at most 200 long."""
    if not text or len(text) > 200 or not is_label(text):
        raise argparse.ArgumentTypeError("must be 1 to 200 printable characters, without "
                                         "control characters (no line breaks, tabs, "
                                         "escapes or Unicode separators and format marks)")
    return text


def at_least_one(text: str) -> int:
    """A whole number of at least 1 (an argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_name_values(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """Add ``flag NAME=VALUE``: repeatable, its values kept in order in a list (empty when
    it is not given), for the command to check."""
    parser.add_argument(flag, action="append", default=[], metavar="NAME=VALUE", help=help)
