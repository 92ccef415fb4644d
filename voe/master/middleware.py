"""Master middleware: the hooks the master's loop emits, and the ordered list that hears them.

Every policy of the master that is not the leasing rules themselves (pacing, metrics,
the workers' snapshot, cycle scheduling, control) is a small class that overrides the
hooks it needs; the others are no-ops. A failure inside one hook is logged and
contained: it never takes the master down, and a ``can_lease`` hook that fails does
not stop leasing (only ``before_start``, which may bind a port, raises: the master
then does not serve). The list is built like the fetch chain's (``voe.components``): the
built-ins by order number, then the ``voe.master_middlewares`` entry points, then the
``VOE_MASTER_MIDDLEWARES`` setting. A class may define ``from_master(master)``;
otherwise it is built with no argument.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from voe.components import build, classes

if TYPE_CHECKING:
    from voe.master.leasing import ActiveLease
    from voe.master.loop import Master
    from voe.master.peers import Key, Peer
    from voe.model import SearchJob

log = logging.getLogger("voe.master")

# Entry-point group of third-party master middlewares.
ENTRY_POINT_GROUP = "voe.master_middlewares"
# The built-in middlewares by order number (lowest hears a hook first).
MIDDLEWARES_BASE = {
    "voe.master.middlewares:Pacing": 100,
    "voe.master.middlewares:Metrics": 200,
    "voe.master.middlewares:WorkersSnapshot": 300,
    "voe.master.middlewares:Cycles": 400,
    "voe.master.middlewares:ControlPlane": 900,
}

# Hooks whose failures are raised, not contained: the master must not serve without them.
STARTING = frozenset({"before_start"})


class Middleware:
    """Base of master middlewares: every hook does nothing until overridden."""

    def before_start(self, master: Master) -> None:
        """The master resumed from the ledger and is about to serve. The one hook whose
        failure is not contained: a middleware that cannot start (a busy port) stops the
        master before it serves, with its error."""

    def before_stop(self, master: Master) -> None:
        """The master is stopping; the ledger is still open."""

    def after_stop(self, master: Master) -> None:
        """The master stopped serving and wrote its last ledger writes."""

    def after_poll(self, master: Master) -> None:
        """One turn of the loop handled what the sockets held (called very often)."""

    def tick(self, master: Master) -> None:
        """About once a second (sooner when the last lease ended), after a ledger flush."""

    def can_lease(self, master: Master) -> bool:
        """Whether any job may be leased now (False pauses leasing this turn)."""
        return True

    def can_lease_job(self, master: Master, job: SearchJob) -> bool:
        """Whether ``job`` may be leased now (False keeps its backend out of this round)."""
        return True

    def after_lease(self, master: Master, peer: Peer, jobs: list[SearchJob]) -> None:
        """``jobs`` were leased to ``peer`` (each with its new attempt number)."""

    def after_ack(self, master: Master, key: Key, lease: ActiveLease | None) -> None:
        """The sink stored job ``key``'s result (``lease`` None when none was known)."""

    def after_failure(self, master: Master, job: SearchJob, status: str, error: str,
                      wait: float | None) -> None:
        """An attempt failed (``status`` as the sink reported it, or "expired"); ``wait``
        is the backoff before the job is leased again, or None when it ended failed."""

    def after_expire(self, master: Master, job: SearchJob, why: str) -> None:
        """The master took back ``job``'s lease (its deadline passed, or its worker left)."""

    def after_worker_left(self, master: Master, peer: Peer, why: str) -> None:
        """``peer`` left, went silent or became unreachable."""

    def after_throttled(self, master: Master, backend: str, count: int) -> None:
        """A worker saw ``count`` throttling answers from ``backend``'s airline."""

    def before_flush(self, master: Master) -> None:
        """The ledger writes of the last moments are about to be committed."""

    def after_flush(self, master: Master, seconds: float) -> None:
        """Ledger writes were committed, taking ``seconds``."""


class _Listeners(dict):
    """Each hook's bound methods, in order, found on first use: only the middlewares that
    override the hook (a hook nobody overrides costs one dict lookup)."""

    def __init__(self, middlewares: list[Any]) -> None:
        super().__init__()
        self.middlewares = middlewares

    def __missing__(self, hook: str) -> list[Any]:
        base = getattr(Middleware, hook)
        listeners = self[hook] = [getattr(middleware, hook) for middleware in self.middlewares
                                  if getattr(type(middleware), hook, base) is not base]
        return listeners


class Middlewares:
    """The master's ordered middlewares; each hook calls only those that override it."""

    def __init__(self, middlewares: Iterable[Any]) -> None:
        self.middlewares = list(middlewares)
        self._listeners = _Listeners(self.middlewares)

    def __iter__(self):
        return iter(self.middlewares)

    def emit(self, master: Master, hook: str, *args: Any) -> None:
        """Call ``hook`` on every middleware that has it, in order; failures are logged
        (but those of ``STARTING`` hooks raise)."""
        listeners = self._listeners[hook]
        if not listeners:
            return
        if hook in STARTING:
            for method in listeners:
                method(master, *args)
            return
        for method in listeners:
            try:
                method(master, *args)
            except Exception:
                log.critical("unexpected failure in %s of %r", hook, method.__self__,
                             exc_info=True)

    def allow(self, master: Master, hook: str, *args: Any) -> bool:
        """Whether every middleware with ``hook`` answers True (a failure counts as True)."""
        for method in self._listeners[hook]:
            try:
                if not method(master, *args):
                    return False
            except Exception:
                log.critical("unexpected failure in %s of %r", hook, method.__self__,
                             exc_info=True)
        return True


def _skip_broken(path: str, why: str) -> None:
    log.error("master middleware %s could not be loaded (%s); running without it", path, why)


def build_middlewares(master: Master, setting: str) -> Middlewares:
    """Build ``master``'s middlewares from the defaults, the entry points and ``setting``
    (``ValueError`` when it names a class that cannot be imported)."""
    chosen = classes(MIDDLEWARES_BASE, ENTRY_POINT_GROUP, setting, "master middleware",
                     _skip_broken)
    return Middlewares(build(chosen, "from_master", master))
