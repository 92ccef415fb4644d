"""Logging for the roles: ``<role>.log`` in the data dir, plus the console when asked.

The file names are the original's (``master.log``, ``sink.log``, ``worker.log``) so
``tail -f master.log`` works as it always did.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from voe import private

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"


def setup(role: str, data_dir: Path, level: str = "INFO", console: bool = True) -> Path:
    """Send the ``voe`` loggers to ``data_dir/<role>.log`` (0600), and stderr if ``console``."""
    path = private.create_file(private.make_dir(data_dir) / f"{role}.log")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter(FORMAT)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(formatter)
    root.addHandler(file_handler)
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        root.addHandler(stream)
    root.setLevel(level)
    return path


class RejectCounter:
    """Counts rejected messages by reason and logs the first of each kind per peer.

    Logging every bad frame would let a hostile peer flood the log; counting them
    keeps the evidence and the log readable.
    """

    def __init__(self, logger: logging.Logger, every: int = 1000) -> None:
        self.logger = logger
        self.every = every
        self.counts: dict[str, int] = {}
        self.total = 0

    def reject(self, where: str, reason: str, detail: str = "") -> None:
        """Count one rejected message; log it when it is the first or every ``every``-th."""
        key = f"{where}:{reason}"
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        self.total += 1
        if count == 1 or count % self.every == 0:
            self.logger.warning("rejected message on %s: %s %s (%d so far)",
                                where, reason, detail, count)
