"""The HTTP port under abuse (issue 15): slow clients, garbage lengths, short, wrong and
non-ASCII tokens. Real masters where the issue asks for them, loopback only."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.cluster import Cluster, free_port, wait_for
from tests.test_control_api import PLAN_VALUES, api_up, call
from voe import metrics
from voe.web import auth
from voe.web.protocol import REQUEST_TIMEOUT
from voe.web.server import serve_metrics

# Slow clients held open at once, and seconds between the header lines each sends.
SLOW_CLIENTS = 300
DRIP = 2.0
# Seconds the slow clients drip: past the request deadline, so the port must close them.
SLOW_WINDOW = REQUEST_TIMEOUT + 4.0
# Share of a core the master may use above its idle rate while they drip.
MAX_EXTRA_CPU = 0.15
# Seconds /api/status may take while they drip.
MAX_ANSWER = 1.0


def _master(tmp_path: Path, airline_url: str) -> tuple[Cluster, int, int]:
    """A master with no worker (its cycle stays open, so it stays up): cluster, port, pid."""
    cluster = Cluster(tmp_path, airline_url, **PLAN_VALUES)
    cluster.env["VOE_SINK_HTTP_PORT"] = "0"
    port = int(cluster.env["VOE_HTTP_PORT"])
    master = cluster.master()
    wait_for(lambda: api_up(port), 30, "the master's HTTP port")
    return cluster, port, master.pid


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _slow_client(port: int) -> socket.socket:
    """A connection that has sent a request line and one header, and will take its time."""
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return client


def test_slow_clients_leave_the_api_answering_and_the_master_idle(tmp_path, airline_url):
    cluster, port, pid = _master(tmp_path, airline_url)
    process = psutil.Process(pid)
    clients: list[socket.socket] = []
    try:
        idle_start, idle_cpu = time.monotonic(), _cpu(process)
        time.sleep(3.0)
        idle_rate = (_cpu(process) - idle_cpu) / (time.monotonic() - idle_start)

        clients = [_slow_client(port) for _ in range(SLOW_CLIENTS)]
        start, cpu, end = time.monotonic(), _cpu(process), time.monotonic() + SLOW_WINDOW
        answers: list[float] = []
        closed = 0
        for line in range(int(SLOW_WINDOW / DRIP) + 1):  # bounded: one round per drip
            if time.monotonic() >= end:
                break
            for index in range(len(clients)):
                try:
                    clients[index].sendall(f"X-Slow-{line}: {'a' * 20}\r\n".encode())
                except OSError:  # the port gave up on it: a new one takes its place
                    closed += 1
                    clients[index].close()
                    clients[index] = _slow_client(port)
            asked = time.monotonic()
            status, _, _ = call(port, "GET", "/api/status")
            answers.append(time.monotonic() - asked)
            assert status == 200
            time.sleep(max(0.0, min(DRIP, end - time.monotonic())))
        rate = (_cpu(process) - cpu) / (time.monotonic() - start)
    finally:
        for client in clients:
            client.close()
        cluster.stop()
    assert len(answers) >= SLOW_WINDOW / DRIP - 1, answers
    assert max(answers) < MAX_ANSWER, answers
    assert rate < idle_rate + MAX_EXTRA_CPU, (idle_rate, rate)
    assert closed >= SLOW_CLIENTS // 2, closed  # none may drip for ever
    assert "Traceback" not in cluster.log("master")


def _raw(port: int, request: bytes) -> bytes:
    """Send ``request`` as it is; the answer's status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request)
        return client.makefile("rb").readline()


@pytest.mark.parametrize("length", ["²".encode(), b"9" * 5000, b"-1", b"12abc"],
                         ids=["superscript", "5000-digits", "negative", "letters"])
def test_a_garbage_content_length_is_a_400_and_one_log_line(tmp_path, airline_url, length):
    cluster, port, _ = _master(tmp_path, airline_url)
    try:
        before = cluster.log("master").splitlines()
        for _ in range(3):
            status_line = _raw(port, b"POST /api/pause HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     b"Content-Length: " + length + b"\r\n\r\n")
            assert status_line.startswith(b"HTTP/1.1 400"), status_line
        assert call(port, "GET", "/api/master")[0] == 200  # still serving
        assert api_up(port)
        time.sleep(0.5)  # the log handler writes as it goes; leave it a moment
        log = cluster.log("master")
        added = log.splitlines()[len(before):]
    finally:
        cluster.stop()
    assert len(added) <= 3, added
    assert "Traceback" not in log
    assert "Traceback" not in (tmp_path / "master.err").read_text()


def test_a_short_token_beyond_loopback_is_refused(tmp_path, airline_url):
    cluster = Cluster(tmp_path, airline_url, **PLAN_VALUES)
    cluster.env.update({"VOE_HTTP_HOST": "0.0.0.0", "VOE_HTTP_TOKEN": "x" * 15})
    result = cluster.voe("master", "--once", "--plan", str(cluster.plan_path), check=False)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "VOE_HTTP_TOKEN" in last and "16" in last and "Traceback" not in result.stderr


def test_token_length_rules():
    with pytest.raises(auth.WebError, match="at least 16"):
        auth.check_binding("0.0.0.0", "x" * 15)
    with pytest.raises(auth.WebError, match="at least 16"):
        auth.check_binding("::", "ü" * 15)
    auth.check_binding("0.0.0.0", "x" * 16)
    auth.check_binding("127.0.0.1", "x")  # loopback: any token
    auth.check_binding("::1", "")


def test_wrong_tokens_cost_their_sender_time():
    now = [100.0]
    throttle = auth.Throttle(penalty=0.5, max_wait=2.0, max_senders=3, clock=lambda: now[0])
    assert throttle.wait("a") == 0.0
    for _ in range(4):
        throttle.wrong("a")
    assert throttle.wait("a") == pytest.approx(2.0) and throttle.wait("b") == 0.0
    now[0] += 1.5
    assert throttle.wait("a") == pytest.approx(0.5)
    for sender in ("b", "c", "d", "e"):  # bounded: the oldest are forgotten
        throttle.wrong(sender)
    assert len(throttle._free_at) <= 3 and throttle.wait("e") == pytest.approx(0.5)


def _status(port: int, token: bytes | None, source: str = "127.0.0.1") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20,
                                            source_address=(source, 0))
    try:
        headers = {} if token is None else {"Authorization": b"Bearer " + token}
        connection.request("GET", "/metrics", headers=headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_guessing_is_throttled_per_address_without_stalling_the_port():
    token = "correct-horse-battery-staple"
    port = free_port()
    server = serve_metrics(metrics.SINK, "127.0.0.1", port, token)
    try:
        statuses: list[int] = []

        def guess(n: int) -> None:
            statuses.append(_status(port, f"wrong-{n}".encode()))

        start = time.monotonic()
        guessers = [threading.Thread(target=guess, args=(n,)) for n in range(30)]
        for guesser in guessers:
            guesser.start()
        time.sleep(0.3)
        other = time.monotonic()  # another address is served at once meanwhile
        assert _status(port, token.encode(), source="127.0.0.2") == 200
        assert time.monotonic() - other < 1.0
        for guesser in guessers:
            guesser.join(30)
        elapsed = time.monotonic() - start
        assert sorted(set(statuses)) == [401, 429], statuses
        checked = statuses.count(401)  # each token checked cost 0.5 s of this address's time
        assert checked <= 2 + elapsed / auth.WRONG_TOKEN_PENALTY, (checked, elapsed)
        assert _status(port, None) == 401  # no token is no guess: answered at once
        wait_for(lambda: server.app.throttle.wait("127.0.0.1") == 0, 30, "the debt paid")
        assert _status(port, token.encode()) == 200
    finally:
        server.stop()


def test_a_non_ascii_token_matches_its_utf8_bytes():
    token = "pässwörd-ünïcödé-✓"
    port = free_port()
    server = serve_metrics(metrics.SINK, "127.0.0.1", port, token)
    try:
        assert _status(port, token.encode()) == 200
        assert _status(port, token.encode("utf-8")[:-1] + b"x") == 401
    finally:
        server.stop()
    assert auth.bearer_ok(token, "Bearer " + token.encode().decode("latin-1"))
    assert not auth.bearer_ok(token, "Bearer " + token[:-1] + "x")


def test_an_address_of_another_machine_is_a_one_line_error():
    with pytest.raises(auth.WebError, match=r"cannot listen on 192\.0\.2\.1:\d+ .*VOE_SINK_HTTP"):
        serve_metrics(metrics.SINK, "192.0.2.1", free_port(), "a-token-of-16-chars")
