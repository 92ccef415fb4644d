"""Find a backend by name: the built-ins, then the ``voe.backends`` entry-point group.

voe's own entry points (the demo airline's backends, shipped in ``voe.demo``) count as
built in: they cannot be replaced, and the core never imports the demo to list them.

A backend factory is any callable taking the ``Settings`` and returning a
``Backend`` (a class whose ``__init__`` takes the settings qualifies). A third-party
package registers one under ``[project.entry-points."voe.backends"]``; an entry
point that fails to load is logged and skipped, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from importlib.metadata import EntryPoint, entry_points

from voe.backends.base import Backend
from voe.backends.null import NullBackend
from voe.settings import Settings

logger = logging.getLogger("voe.backends")

ENTRY_POINT_GROUP = "voe.backends"
BUILT_IN = "built-in"

Factory = Callable[[Settings], Backend]

_BUILT_INS: dict[str, Factory] = {
    "null": NullBackend,
}
_registered: dict[str, Factory] = {}


class UnknownBackend(LookupError):
    """No backend has this name; the message lists the ones that do exist."""

    def __init__(self, name: str, available: list[str] | None = None) -> None:
        names = ", ".join(sorted(available if available is not None else available_backends()))
        super().__init__(f"unknown backend {name!r}; available: {names or 'none'}")
        self.name = name


def _own(entry_point: EntryPoint) -> bool:
    """Whether voe itself ships this entry point (then it is built in)."""
    dist = getattr(entry_point, "dist", None)
    return dist is not None and dist.name == "voe"


def _built_in_names() -> set[str]:
    own = {found.name for found in entry_points(group=ENTRY_POINT_GROUP) if _own(found)}
    return own | set(_BUILT_INS)


def register(name: str, factory: Factory) -> None:
    """Register a backend factory under ``name`` in this process (e.g. from a plugin or test)."""
    if name in _built_in_names():
        raise ValueError(f"backend {name!r} is built in and cannot be replaced")
    _registered[name] = factory


def _entry_points() -> dict[str, EntryPoint]:
    """Return the group's entry points by name (voe's own first), except those shadowed by
    built-ins."""
    found: dict[str, EntryPoint] = {}
    built_in = _built_in_names()
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in built_in and not _own(entry_point):
            logger.warning("backend entry point %s=%s ignored: %r is built in",
                           entry_point.name, entry_point.value, entry_point.name)
        else:
            found[entry_point.name] = entry_point
    return found


def _load(entry_point: EntryPoint) -> Factory | None:
    """Load an entry point's factory, or log a warning and return ``None`` if it fails."""
    try:
        factory = entry_point.load()
    except Exception as error:  # any import-time failure of a plugin must not crash voe
        logger.warning("backend entry point %s=%s failed to load: %s: %s",
                       entry_point.name, entry_point.value, type(error).__name__, error)
        return None
    if not callable(factory):
        logger.warning("backend entry point %s=%s is not callable",
                       entry_point.name, entry_point.value)
        return None
    return factory


def _describe(factory: Factory) -> str:
    module = getattr(factory, "__module__", "?")
    return f"{module}:{getattr(factory, '__qualname__', type(factory).__name__)}"


def available_backends() -> dict[str, str]:
    """Return every usable backend name with where it comes from (``module:object``/built-in)."""
    names = {name: BUILT_IN for name in _BUILT_INS}
    names.update({name: _describe(factory) for name, factory in _registered.items()})
    for name, entry_point in _entry_points().items():
        if name not in names and _load(entry_point) is not None:
            names[name] = BUILT_IN if _own(entry_point) else entry_point.value
    return names


class InstalledBackends(Collection[str]):
    """The names ``available_backends`` gives, asked one at a time: a built-in or
    registered name loads nothing and an entry point's name loads only that entry point,
    so checking a plan does not import every plugin (listing them all still does)."""

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in _BUILT_INS or name in _registered:
            return True
        entry_point = _entry_points().get(name)
        return entry_point is not None and _load(entry_point) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(available_backends())

    def __len__(self) -> int:
        return len(available_backends())


def get_backend(name: str, settings: Settings) -> Backend:
    """Build the backend called ``name`` with ``settings``; raise ``UnknownBackend`` if none."""
    factory = _BUILT_INS.get(name) or _registered.get(name)
    if factory is None:
        entry_point = _entry_points().get(name)
        factory = _load(entry_point) if entry_point is not None else None
    if factory is None:
        raise UnknownBackend(name, list(available_backends()))
    return factory(settings)
