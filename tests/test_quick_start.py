"""The master leases before its web stack is loaded, and its HTTP port stops at once.

The web stack (FastAPI, pydantic, uvicorn) costs a third of a second of CPU to import
and build; the master binds its HTTP port at start (a busy port is still a one-line
error) but builds and serves it from a later housekeeping tick, in its own thread.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from masterparts import WALL_START, FakeClock, tiny_plan

from tests.cluster import free_port
from voe import metrics
from voe.master.loop import Master
from voe.master.middlewares import WEB_START_SECONDS, ControlPlane
from voe.master.transport import StubTransport
from voe.web.app import metrics_app
from voe.web.auth import WebError
from voe.web.control import Control
from voe.web.server import WebServer, serve, serve_metrics

REPO = Path(__file__).resolve().parent.parent

NULL_PLAN = """
[plan]
name = "null-quick"
cycle = "once"

[dates]
start_in_days = 1
days_ahead = 2

[[routes]]
backend = "null"
airports = ["AAA", "BBB"]
"""

# What a master on a null-backend plan must not import before its first lease (master
# middlewares of installed plugins, such as the test plugin's, may import what they like).
HEAVY = ("fastapi", "pydantic", "starlette", "uvicorn", "lxml", "gevent", "voe.demo")
# What reading the settings and a null-backend plan must not import: the fetch chain.
FETCHING = ("requests", "voe.worker.fetch", "lxml", "voe.demo")

STARTING_MASTER = """
import json, sys
from voe.cli.common import user_plan, user_settings
settings = user_settings()
plan = user_plan(sys.argv[1], settings)
read = [name for name in json.loads(sys.argv[3]) if name in sys.modules]
from voe.master.loop import Master
master = Master(settings, plan)
master.start()
master.emit("before_start")
master.step(0)
loaded = [name for name in json.loads(sys.argv[2]) if name in sys.modules]
master.close()
print(json.dumps([read, loaded]))
"""


def _get(port: int, path: str, connection: http.client.HTTPConnection | None = None) -> int:
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    return answer.status


def _refused(port: int) -> bool:
    try:
        _get(port, "/metrics")
    except ConnectionRefusedError:
        return True
    return False


def test_a_starting_master_loads_neither_the_web_stack_nor_the_fetch_chain(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(NULL_PLAN)
    env = {key: value for key, value in os.environ.items() if not key.startswith("VOE_")}
    env.update(VOE_DATA_DIR=str(tmp_path / "data"), VOE_CURVE="off",
               VOE_HTTP_PORT=str(free_port()), VOE_JOBS_PORT=str(free_port()),
               VOE_CONTROL_PORT=str(free_port()), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", STARTING_MASTER, str(plan), json.dumps(HEAVY),
                           json.dumps(FETCHING)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[], []]


def test_the_http_port_is_bound_at_start_and_served_from_a_later_tick(tmp_path, make_settings):
    port = free_port()
    clock = FakeClock(50.0)
    settings = make_settings(voe_data_dir=tmp_path, voe_http_port=port)
    master = Master(settings, tiny_plan(tmp_path), transport=StubTransport(), clock=clock,
                    wall=FakeClock(WALL_START))
    plane = next(m for m in master.middlewares if isinstance(m, ControlPlane))
    answers: list[int] = []
    asking = threading.Thread(target=lambda: answers.append(_get(port, "/metrics")))
    try:
        master.start()
        master.emit("before_start")
        with pytest.raises(WebError, match="in use"):
            serve(settings, Control())
        asking.start()  # waits on the bound port
        master.step()  # the first tick: too early to serve
        assert plane.web is not None and not plane.web.started
        asking.join(0.3)
        assert asking.is_alive() and answers == []
        clock.advance(max(1.0, WEB_START_SECONDS))
        master.step()  # the next tick serves, and the waiting request is answered
        assert plane.web.started
        asking.join(30)
        assert answers == [200]
    finally:
        master.close()
        asking.join(30)
    assert _refused(port)


def test_a_port_stops_when_idle_and_when_a_connection_is_open():
    interval = sys.getswitchinterval()
    port = free_port()
    server = serve_metrics(metrics.SINK, "127.0.0.1", port, "")
    assert server is not None and _get(port, "/metrics") == 200
    assert sys.getswitchinterval() == interval  # shortened while building only
    server.stop()
    assert not server.thread.is_alive() and _refused(port)

    server = serve_metrics(metrics.SINK, "127.0.0.1", port, "")
    assert server is not None
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        assert _get(port, "/metrics", kept) == 200  # kept alive: uvicorn's own shutdown runs
        server.stop()
        assert not server.thread.is_alive() and _refused(port)
        assert kept.sock is not None and kept.sock.recv(1) == b""  # closed by the server
    finally:
        kept.close()


def test_a_port_stopped_while_its_app_is_built_never_serves():
    port = free_port()
    building, go_on = threading.Event(), threading.Event()

    def make_app():
        building.set()
        go_on.wait(30)
        return metrics_app(metrics.SINK, "")

    server = WebServer("127.0.0.1", port, make_app, "VOE_SINK_HTTP_PORT", "sink")
    server.start()
    assert building.wait(30)
    stopping = threading.Thread(target=server.stop)
    stopping.start()
    for _ in range(3000):  # bounded: stop() marks the server at once, then waits
        if server.stopping:
            break
        time.sleep(0.01)
    go_on.set()
    stopping.join(30)
    assert server.stopping and server.server is None
    assert not server.thread.is_alive() and _refused(port)


def test_a_port_whose_app_cannot_be_built_says_why_and_closes(caplog):
    port = free_port()

    def make_app():
        raise RuntimeError("no web stack here")

    server = WebServer("127.0.0.1", port, make_app, "VOE_HTTP_PORT", "master")
    with caplog.at_level(logging.ERROR, logger="voe.web"):
        server.start()
        server.thread.join(30)
    assert not server.thread.is_alive() and _refused(port)
    assert f"127.0.0.1:{port} cannot serve: no web stack here" in caplog.text
    server.stop()  # the role's own stop still works


def test_a_lazy_port_builds_its_app_for_its_first_visitor_and_never_without_one():
    port = free_port()
    built: list[str] = []

    def make_app():
        built.append("app")
        return metrics_app(metrics.SINK, "")

    server = WebServer("127.0.0.1", port, make_app, "VOE_HTTP_PORT", "master", lazy=True)
    server.start()
    time.sleep(0.3)
    assert built == [] and server.thread.is_alive()  # waiting on the bound port
    assert _get(port, "/metrics") == 200 and built == ["app"]
    server.stop()
    assert not server.thread.is_alive() and _refused(port)

    idle = WebServer("127.0.0.1", port, make_app, "VOE_HTTP_PORT", "master", lazy=True)
    idle.start()
    started = time.monotonic()
    idle.stop()  # nobody came: the waiting thread wakes and ends at once, nothing built
    assert time.monotonic() - started < 5 and not idle.thread.is_alive()
    assert built == ["app"] and _refused(port)
