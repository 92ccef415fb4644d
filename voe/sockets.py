"""Socket options every voe socket shares: limits and CURVE encryption in one place.

Servers (the master's ROUTERs, the sink's PULL) get their secret key, CURVE_SERVER
and a ZAP authenticator that admits only the client keys in the authorized folder
(re-read when it changes, so a worker key added later is admitted without a
restart). Clients (workers, the sink's DEALER) get the server's public key and
their own key pair. Refused peers are counted in bounded memory and logged in a
bounded number of lines, naming the peer's address where ZeroMQ gives it.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.base import Authenticator

from voe import keys
from voe.settings import Settings

log = logging.getLogger("voe.security")

# ZeroMQ drops a connection that sends a frame above this multiple of the message
# limit; frames between the limit and this cap reach the decoder, which counts and
# logs them as oversized, so a misbehaving peer is visible in the logs.
HARD_CAP_FACTOR = 2
# Refusals come from anyone who can reach a port, so their bookkeeping is bounded:
# the peers remembered (the oldest forgotten first), and the log lines (a new peer of
# a kind is logged at once, the rest summed up in one line per interval).
REMEMBERED_PEERS = 1024
# At most one line per kind of refusal in this many seconds, then one summary line.
LOG_INTERVAL = 5.0
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
    """Counts refused peers in bounded memory; logs them in a bounded number of lines.

    A peer not seen lately is logged on its own line unless a peer of its kind was
    already logged in the current interval; every other refusal is summed up in one
    line at the interval's end, so a flood of random keys writes a line per interval.
    """

    def __init__(self, remembered: int = REMEMBERED_PEERS, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.remembered = remembered
        self.interval = interval
        self.clock = clock
        self.peers: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.total = 0
        self.logged: dict[str, float] = {}
        self.pending: Counter[str] = Counter()
        self.timer: threading.Timer | None = None

    def refuse(self, kind: str, peer: str, why: str) -> None:
        """Count one refusal of ``peer`` (its key and address), a peer ``kind``."""
        now = self.clock()
        with self.lock:
            self.total += 1
            seen = self.peers.pop((kind, peer), 0)
            self.peers[kind, peer] = seen + 1
            if len(self.peers) > self.remembered:
                self.peers.popitem(last=False)
            if not seen and now - self.logged.get(kind, -self.interval) >= self.interval:
                self.logged[kind] = now
                total = self.total
            else:
                self.pending[kind] += 1
                self._schedule()
                return
        log.warning("refused peer %s %s: %s (%d refusals in all)", kind, peer, why, total)

    def _schedule(self) -> None:
        """Start the timer of the next summary line unless one is running (lock held)."""
        if self.timer is None:
            self.timer = threading.Timer(self.interval, self.summarize)
            self.timer.daemon = True
            self.timer.start()

    def summarize(self) -> None:
        """Log one line for the refusals not logged on their own since the last one."""
        with self.lock:
            self.timer = None
            pending, self.pending = self.pending, Counter()
            total, remembered = self.total, len(self.peers)
            now = self.clock()
            for kind in pending:
                self.logged[kind] = now
        if pending:
            kinds = ", ".join(f"{count} {kind}" for kind, count in pending.most_common())
            log.warning("refused %d more connection(s) in the last %.0f s (%s); %d refusals "
                        "in all, %d distinct peer(s) remembered", sum(pending.values()),
                        self.interval, kinds, total, remembered)


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
        REFUSALS.refuse("with client key", f"{client_key.decode('ascii', 'replace')} from "
                        f"{getattr(_zap_request, 'address', '') or 'an unknown address'}",
                        f"not authorized on the {self.server} (not in {self.folder})")
        return False


# The address of the peer whose ZAP request the authenticator's thread is handling.
_zap_request = threading.local()


class PeerAuthenticator(Authenticator):
    """ZAP in a thread of its own that keeps each request's peer address for the refusal
    lines. A plain thread polls the ZAP socket: pyzmq's ThreadAuthenticator runs an asyncio
    loop there, and importing asyncio alone cost every server 15 ms of its start."""

    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the ZAP socket and answer it in a daemon thread until ``stop``."""
        super().start()
        endpoint = f"inproc://voe-zap-{id(self)}"
        self._pipe = self.context.socket(zmq.PAIR, socket_class=zmq.Socket)
        self._pipe.linger = 1
        self._pipe.bind(endpoint)
        inbox = self.context.socket(zmq.PAIR, socket_class=zmq.Socket)
        inbox.linger = 1
        inbox.connect(endpoint)
        self._thread = threading.Thread(target=self._serve, args=(inbox,), daemon=True,
                                        name="voe-zap")
        self._thread.start()

    def stop(self) -> None:
        """End the thread, then close the ZAP socket."""
        if self._thread is not None:
            self._pipe.send(b"stop")
            self._thread.join()
            self._thread = None
            self._pipe.close()
        super().stop()

    def _serve(self, inbox: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(inbox, zmq.POLLIN)
        poller.register(self.zap_socket, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if inbox in events:
                    return
                if self.zap_socket in events:
                    self._answer(self.zap_socket.recv_multipart())
        finally:
            inbox.close()

    def _answer(self, msg: list[bytes]) -> None:
        """Authenticate one request, its peer address (its fourth frame) noted meanwhile.

        pyzmq's handler is a coroutine; with the callback here (``AuthorizedKeys``, which
        returns at once) it never waits, so it runs to its end in one step. A request it
        fails on is refused (500), so the ZAP socket is free for the next one."""
        _zap_request.address = (msg[3].decode("ascii", "replace")
                                if len(msg) > 3 and msg[3].isascii() else "")
        try:
            _run_to_end(self.handle_zap_message(msg))
        except Exception:
            log.exception("ZAP request failed; refusing it")
            if len(msg) > 1:
                self._send_zap_reply(msg[1], b"500", b"Internal error")
        finally:
            _zap_request.address = ""


def _run_to_end(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never waits; ``RuntimeError`` if it does."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("the ZAP handler waited; it must answer at once")


_authenticators: dict[int, PeerAuthenticator] = {}
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
        authenticator = PeerAuthenticator(context, log=logging.getLogger("voe.auth"))
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
            event, value, endpoint = _monitor_event(monitor)
            if event == zmq.EVENT_MONITOR_STOPPED:
                return
            kind, why = _HANDSHAKE_FAILURES.get(value, _OTHER_FAILURE)
            # A failed handshake's event names the listening endpoint, never the peer.
            REFUSALS.refuse(kind, f"(ZeroMQ gives no peer address for a failed handshake) "
                            f"on the {server}'s {endpoint}", f"failed handshake ({why}; "
                            f"event {event:#x}, error {value:#x})")
    except zmq.ZMQError as error:
        log.debug("monitor of the %s stopped: %s", server, error)
    finally:
        monitor.close(0)


def _monitor_event(monitor: zmq.Socket) -> tuple[int, int, str]:
    """The next event of a socket monitor as (event, value, endpoint): ZeroMQ sends a 16-bit
    event and a 32-bit value in one frame, the endpoint in a second. (Read here, as
    ``zmq.utils.monitor`` would, without importing asyncio with it: 15 ms of each start.)"""
    frames = monitor.recv_multipart()
    if len(frames) != 2 or len(frames[0]) != 6:
        raise zmq.ZMQError(msg=f"not a monitor event: {len(frames)} frame(s)")
    event, value = struct.unpack("=Hi", frames[0])
    return event, value, frames[1].decode("ascii", "replace")


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
