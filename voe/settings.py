"""Every setting of voe with its default, read with python-decouple.

Values come from the environment first, then from ``.env`` in the working
directory, then from the defaults below. A malformed value is a ``SettingsError``
whose message names the setting, the value and what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decouple import Config, RepositoryEmpty, RepositoryEnv, UndefinedValueError


class SettingsError(Exception):
    """A setting is missing or malformed; the message is meant for the user."""


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError("out of range")
    return port


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be positive")
    return number


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("not an http(s) URL")
    return value.rstrip("/")


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _text(value: str) -> str:
    return value


@dataclass(frozen=True)
class Setting:
    """One setting: its name, default (as text, like in ``.env``), parser and meaning."""

    name: str
    default: str
    cast: Callable[[str], Any]
    expected: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("MASTER_IP", "127.0.0.1", _text, "a host name or address",
            "Address of the master that workers and the sink connect to."),
    Setting("SINK_IP", "127.0.0.1", _text, "a host name or address",
            "Address of the sink that workers push results to."),
    Setting("VOE_BIND_IP", "127.0.0.1", _text, "an address",
            "Address the master and the sink listen on (0.0.0.0 on a fleet)."),
    Setting("VOE_JOBS_PORT", "1313", _port, "a port number (1-65535)",
            "Master port where workers take jobs and send credit and heartbeats."),
    Setting("VOE_CONTROL_PORT", "13131", _port, "a port number (1-65535)",
            "Master port where the sink acknowledges stored results."),
    Setting("VOE_RESULTS_PORT", "13132", _port, "a port number (1-65535)",
            "Sink port where workers push results."),
    Setting("VOE_DATA_DIR", ".", _text, "a directory",
            "Where the ledger (ledger.db), the store (fares.db) and the logs go."),
    Setting("VOE_PLAN", "", _text, "a path to a plan file",
            "Collection plan used when --plan is not given; empty means the demo plan."),
    Setting("VOE_DEMO_AIRLINE_URL", "http://127.0.0.1:8800", _url, "an http(s) URL",
            "Base URL of the demo airline that the demo backend searches."),
    Setting("VOE_CONCURRENCY", "16", _positive_int, "a whole number of at least 1",
            "Searches a worker runs at once."),
    Setting("VOE_PREFETCH", "2", _non_negative_int, "a whole number of at least 0",
            "Jobs a worker may hold beyond its free concurrency."),
    Setting("VOE_HEARTBEAT_SECONDS", "1.0", _positive_float, "a positive number of seconds",
            "Interval of heartbeats between workers and the master."),
    Setting("VOE_HEARTBEAT_LIVENESS", "5", _positive_int, "a whole number of at least 1",
            "Missed heartbeats after which a peer counts as gone."),
    Setting("VOE_HTTP_TIMEOUT", "10", _positive_float, "a positive number of seconds",
            "Connect and read timeout of each airline request."),
    Setting("VOE_MAX_MESSAGE_BYTES", "1048576", _positive_int, "a whole number of bytes",
            "Largest message any voe socket accepts; bigger frames are dropped."),
    Setting("VOE_LOG_LEVEL", "INFO", _log_level, "DEBUG, INFO, WARNING or ERROR",
            "Level of the master.log, sink.log and worker.log files."),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


class Settings:
    """The resolved settings; attribute names are the setting names in lower case."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str]) -> None:
        self._values = values
        self.sources = sources

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name.upper()]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def data_dir(self) -> Path:
        """The data directory as a path (created on demand by the roles)."""
        return Path(self._values["VOE_DATA_DIR"]).expanduser()

    def as_env(self) -> dict[str, str]:
        """Every setting as text, for handing to a child process's environment."""
        return {name: str(value) for name, value in self._values.items()}


def load(env_file: str | os.PathLike[str] = ".env") -> Settings:
    """Read every setting from the environment, then ``env_file``, then the defaults."""
    path = Path(env_file)
    repository = RepositoryEnv(str(path)) if path.is_file() else RepositoryEmpty()
    config = Config(repository)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.name in os.environ:
            source = "environment"
        elif path.is_file() and setting.name in repository.data:
            source = str(path)
        else:
            source = "default"
        try:
            raw = config(setting.name, default=setting.default)
        except UndefinedValueError as error:
            raise SettingsError(f"setting {setting.name} is missing") from error
        try:
            values[setting.name] = setting.cast(str(raw).strip())
        except ValueError:
            raise SettingsError(
                f"setting {setting.name}={raw!r} (from {source}): expected {setting.expected}"
            ) from None
        sources[setting.name] = source
    return Settings(values, sources)


def describe(name: str) -> Setting:
    """Return the definition of the setting ``name``."""
    return _BY_NAME[name]
