"""Backends fetch and parse the fares of one search; find them by name here."""

from voe.backends.registry import (
    InstalledBackends,
    UnknownBackend,
    available_backends,
    get_backend,
    register,
)

__all__ = ["InstalledBackends", "UnknownBackend", "available_backends", "get_backend", "register"]
