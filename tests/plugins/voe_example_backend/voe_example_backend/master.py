"""A third-party master middleware that notes the hooks it heard.

Appends one line per hook to the file named by ``VOE_EXAMPLE_TRACE`` (nothing when
unset): ``master start``, ``master lease N``, ``master ack``, ``master stop``, so a
test can tell that it ran inside a real master, after voe's own middlewares.
"""

from __future__ import annotations

from voe.master.middleware import Middleware
from voe_example_backend.trace import _note


class TraceMaster(Middleware):
    """Note the master's start, each lease batch, each stored result and the stop."""

    order = 950

    def before_start(self, master) -> None:
        """Note the start and the middlewares before this one."""
        names = [type(middleware).__name__ for middleware in master.middlewares]
        _note("master start " + " ".join(names))

    def after_lease(self, master, peer, jobs) -> None:
        """Note how many jobs went out."""
        _note(f"master lease {len(jobs)}")

    def after_ack(self, master, key, lease) -> None:
        """Note a stored result."""
        _note("master ack")

    def after_stop(self, master) -> None:
        """Note the stop."""
        _note("master stop")
