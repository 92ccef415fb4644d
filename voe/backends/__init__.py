"""Backends fetch and parse the fares of one search; find them by name here."""

from voe.backends.registry import UnknownBackend, available_backends, get_backend, register

__all__ = ["UnknownBackend", "available_backends", "get_backend", "register"]
