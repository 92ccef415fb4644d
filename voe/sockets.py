"""Socket options every voe socket shares: limits and CURVE encryption in one place.

Servers (the master's ROUTERs, the sink's PULL) get their secret key, CURVE_SERVER
and a ZAP authenticator that admits only the client keys in the authorized folder
(re-read when it changes, so a worker key added later is admitted without a
restart). Clients (workers, the sink's DEALER) get the server's public key and
their own key pair. Refused peers are counted and each is logged once.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from voe import keys
from voe.settings import Settings

log = logging.getLogger("voe.security")

# ZeroMQ drops a connection that sends a frame above this multiple of the message
# limit; frames between the limit and this cap reach the decoder, which counts and
# logs them as oversized, so a misbehaving peer is visible in the logs.
HARD_CAP_FACTOR = 2
# A refused peer is logged the first time and then every this many refusals.
LOG_EVERY = 1000
# Handshake failures the servers' monitors count (ZAP refusals are counted by ZAP).
# A client without CURVE may notice the mismatch first and hang up, which the server
# sees as a failure without detail: both count.
_HANDSHAKE_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL

# Peer kinds (and reasons) by the protocol error of a failed handshake.
_HANDSHAKE_FAILURES = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        ("without CURVE", "a client that does not encrypt"),
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        ("with foreign keys", "a client with another cluster's server key"),
}
_OTHER_FAILURE = ("without CURVE or not ZeroMQ", "a broken handshake or garbage")


class Refusals:
    """Counts refused peers; logs each peer once (then every ``LOG_EVERY``-th time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.total = 0

    def refuse(self, peer: str, why: str) -> None:
        """Count one refusal of ``peer``."""
        with self.lock:
            count = self.counts.get(peer, 0) + 1
            self.counts[peer] = count
            self.total += 1
            total = self.total
        if count == 1 or count % LOG_EVERY == 0:
            log.warning("refused peer %s: %s (%d time(s); %d refusals in all)",
                        peer, why, count, total)


REFUSALS = Refusals()


class AuthorizedKeys:
    """The client public keys of the authorized folder, re-read whenever it changes."""

    def __init__(self, folder: Path, server: str) -> None:
        self.folder = folder
        self.server = server
        self.lock = threading.Lock()
        self.signature: tuple = ()
        self.keys: set[bytes] = set()
        self._reload()

    def _current_signature(self) -> tuple:
        try:
            entries = sorted(os.scandir(self.folder), key=lambda entry: entry.name)
        except OSError as error:
            log.error("cannot read the authorized keys in %s: %s", self.folder, error.strerror)
            return ()
        return tuple((entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
                     for entry in entries)

    def _reload(self) -> None:
        signature = self._current_signature()
        if signature == self.signature:
            return
        try:
            certificates = zmq.auth.load_certificates(str(self.folder))
        except (OSError, ValueError) as error:
            log.error("cannot load the authorized keys in %s: %s", self.folder,
                      type(error).__name__)
            return
        added, removed = len(set(certificates) - self.keys), len(self.keys - set(certificates))
        if self.signature and added:
            log.info("%s: %d new authorized client key(s) in %s", self.server, added,
                     self.folder)
        if removed:
            log.info("%s: %d client key(s) no longer authorized in %s", self.server, removed,
                     self.folder)
        self.keys = set(certificates)
        self.signature = signature

    def callback(self, domain: str, client_key: bytes) -> bool:
        """ZAP: admit ``client_key`` (z85) if it is authorized; count it otherwise.

        The folder is looked at on every handshake (one directory listing; handshakes
        are per connection), so a key added is admitted and a key removed refused at once.
        """
        with self.lock:
            self._reload()
            if client_key in self.keys:
                return True
        REFUSALS.refuse(f"with client key {client_key.decode('ascii', 'replace')}",
                        f"not authorized on the {self.server} (not in {self.folder})")
        return False


_authenticators: dict[int, ThreadAuthenticator] = {}
_domains: set[str] = set()
_announced = False


def _announce(settings: Settings) -> None:
    global _announced
    if _announced:
        return
    _announced = True
    if settings.voe_curve:
        log.info("CURVE is on: traffic encrypted, peers authenticated with the keys in %s",
                 keys.keys_dir(settings))
    else:
        log.warning("CURVE is OFF (VOE_CURVE=off): traffic is in clear text and any peer "
                    "that reaches the ports is admitted")


def _authenticator(context: zmq.Context, folder: Path, server: str) -> None:
    """Start this context's ZAP authenticator once; admit ``folder``'s keys on ``server``."""
    authenticator = _authenticators.get(id(context))
    if authenticator is None:
        authenticator = ThreadAuthenticator(context, log=logging.getLogger("voe.auth"))
        authenticator.start()
        _authenticators[id(context)] = authenticator
    if server not in _domains:
        authenticator.configure_curve_callback(server, AuthorizedKeys(folder, server))
        _domains.add(server)


def _watch(socket: zmq.Socket, server: str) -> None:
    """Count failed handshakes (clients without CURVE, garbage) in a monitor thread."""
    monitor = socket.get_monitor_socket(_HANDSHAKE_EVENTS | zmq.EVENT_MONITOR_STOPPED)
    thread = threading.Thread(target=_watch_loop, args=(monitor, server), daemon=True,
                              name=f"voe-monitor-{server}")
    thread.start()


def _watch_loop(monitor: zmq.Socket, server: str) -> None:
    try:
        while True:
            event = recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                return
            endpoint = event["endpoint"]
            if isinstance(endpoint, bytes):
                endpoint = endpoint.decode("ascii", "replace")
            kind, why = _HANDSHAKE_FAILURES.get(event["value"], _OTHER_FAILURE)
            REFUSALS.refuse(f"{kind} on {endpoint}", f"failed handshake on the {server} "
                            f"({why}; event {event['event']:#x}, error {event['value']:#x})")
    except zmq.ZMQError as error:
        log.debug("monitor of the %s stopped: %s", server, error)
    finally:
        monitor.close(0)


def configure(socket: zmq.Socket, settings: Settings, linger_ms: int = 0, *,
              serve: str | None = None, connect_to: str | None = None) -> zmq.Socket:
    """Apply the shared limits, and CURVE unless VOE_CURVE=off, to ``socket``.

    ``serve`` names the server (master or sink) a socket that binds belongs to;
    ``connect_to`` names the server a connecting socket talks to. Raises
    ``keys.KeysError`` when CURVE is on and a key is missing.
    """
    socket.setsockopt(zmq.LINGER, linger_ms)
    socket.setsockopt(zmq.MAXMSGSIZE, HARD_CAP_FACTOR * settings.voe_max_message_bytes)
    if serve is None and connect_to is None:
        return socket
    _announce(settings)
    if not settings.voe_curve:
        return socket
    directory = keys.keys_dir(settings)
    if serve is not None:
        public, secret = keys.server_keys(directory, serve)
        _authenticator(socket.context, keys.authorized_dir(directory), serve)
        socket.setsockopt(zmq.ZAP_DOMAIN, serve.encode())
        socket.setsockopt(zmq.CURVE_PUBLICKEY, public)
        socket.setsockopt(zmq.CURVE_SECRETKEY, secret)
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        _watch(socket, serve)
    else:
        assert connect_to is not None
        server_public, public, secret = keys.client_keys(directory, connect_to)
        socket.setsockopt(zmq.CURVE_SERVERKEY, server_public)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, public)
        socket.setsockopt(zmq.CURVE_SECRETKEY, secret)
    return socket


class BindError(Exception):
    """A port voe must listen on cannot be taken; the message is meant for the user."""


def bind(socket: zmq.Socket, host: str, port: int, setting: str) -> None:
    """Bind ``socket`` on ``host:port``, or raise ``BindError`` naming the setting to change."""
    try:
        socket.bind(f"tcp://{host}:{port}")
    except zmq.ZMQError as error:
        socket.close(0)
        raise BindError(f"cannot listen on {host}:{port} ({setting}): {zmq.strerror(error.errno)}; "
                        f"is another voe running? Set {setting} to a free port") from None
