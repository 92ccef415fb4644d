"""The command line's side of the master's HTTP port: ask the running master to act.

Pausing, resuming, starting a cycle and retrying dead letters change the master's own
state, so the CLI asks the master of its data dir (the holder of its lock) through the
control API, at ``VOE_HTTP_HOST``:``VOE_HTTP_PORT`` with ``VOE_HTTP_TOKEN``, the same
settings the master serves with. Every way this can go wrong is a ``ControlError``
whose message is one line for the user.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from voe.master.lock import holder
from voe.settings import Settings
from voe.web.control import COMMAND_TIMEOUT

# Seconds a request may take: the master answers within COMMAND_TIMEOUT, or says why not.
REQUEST_TIMEOUT = COMMAND_TIMEOUT + 5
# Where a client reaches a server listening on every address.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1", "": "127.0.0.1"}


class ControlError(Exception):
    """The running master could not be asked, or refused; the message is meant for the user."""


class NoMaster(ControlError):
    """No master runs on the data dir."""


class PortOff(ControlError):
    """A master runs, with its HTTP port turned off (``VOE_HTTP_PORT=0``)."""


def running_master(settings: Settings) -> int | None:
    """The PID of the master holding the data dir's lock, or None when none runs."""
    return holder(settings.data_dir)


def ask_master(settings: Settings, path: str) -> dict[str, Any]:
    """POST ``path`` (e.g. ``/api/pause``) to the running master's control API; its JSON
    answer, or a ``ControlError`` (``NoMaster`` when none runs, ``PortOff`` when its port
    is off) saying why not."""
    if running_master(settings) is None:
        raise NoMaster(f"no master is running on the data dir {settings.data_dir.resolve()} "
                       "(start one with voe master)")
    if not settings.voe_http_port:
        raise PortOff("the running master's HTTP port is off (VOE_HTTP_PORT=0), and "
                      "this command goes through it: restart the master with a port")
    host = _WILDCARDS.get(settings.voe_http_host.strip(), settings.voe_http_host.strip("[]"))
    where = f"{settings.voe_http_host}:{settings.voe_http_port} (VOE_HTTP_HOST, VOE_HTTP_PORT)"
    headers = {"Authorization": f"Bearer {settings.voe_http_token}"} \
        if settings.voe_http_token else {}
    connection = http.client.HTTPConnection(host, settings.voe_http_port,
                                            timeout=REQUEST_TIMEOUT)
    try:
        connection.request("POST", path, headers=headers)
        answer = connection.getresponse()
        status, body = answer.status, answer.read()
    except OSError as error:
        raise ControlError(f"cannot reach the running master's HTTP port at {where}: "
                           f"{error.strerror or error}; are these settings the master's?") \
            from None
    finally:
        connection.close()
    try:
        payload = json.loads(body)
    except ValueError:
        raise ControlError(f"the server at {where} answered {status} without JSON: is it "
                           "voe's master?") from None
    if status >= 300 or not isinstance(payload, dict):
        reason = payload.get("error") if isinstance(payload, dict) else None
        raise ControlError(f"the master answered {status}: {reason or payload!r}")
    return payload
