"""The sink rides out store outages: terminated PostgreSQL connections, a full disk, a lock.

Real processes over loopback, a real PostgreSQL server and a real small file system
(a tmpfs the test mounts itself). A store error that passes holds one batch,
unacknowledged, retried with backoff while heartbeats tell the master what the sink
waits for; every job ends stored exactly once. A fatal store error still ends the sink
with status 2 and one line.
"""

from __future__ import annotations

import errno
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import Cluster, assert_stored_exactly_once, free_port, wait_for
from tests.postgres import SERVER_URL, fresh_schema
from voe import protocol
from voe.keys import server_keys
from voe.model import Fare, Result, SearchJob
from voe.sink import loop as sink
from voe.store import SqliteStore, StoreError, StoreUnavailable, open_store
from voe.store import sqlite as sqlite_store

# Six airports, four days: 120 jobs, long enough a run for the faults below.
AIRPORTS = '["GRU", "REC", "SSA", "POA", "CWB", "FOR"]'
DAYS = 4
JOBS = 6 * 5 * DAYS
# Terminations of the sink's PostgreSQL connections during one run.
TERMINATIONS = 6


# ---- helpers ------------------------------------------------------------------------------


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``path`` for the block (skip if mounting is not permitted)."""
    path.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                  str(path)], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command here: the test needs a small tmpfs of its own")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({mounted.stderr.strip()}): the test needs root "
                    "with CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        unmounted = subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
        if unmounted.returncode != 0:  # still busy: detach it now, freed once unused
            subprocess.run(["umount", "--lazy", str(path)], check=True, timeout=30)


def fill(path: Path) -> int:
    """Write ``path`` until its file system has no room left; return the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as filler:
        for size in (1 << 20, 1 << 16, 1 << 12):
            chunk = b"x" * size
            while True:
                try:
                    written += filler.write(chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    return written


@contextmanager
def reader(path: Path) -> Iterator[sqlite3.Connection]:
    """Keep the SQLite store ``path`` open, idle, as a report reading it would.

    The last connection to close checkpoints the WAL into the store and deletes it: a
    sink alone with its store would free some space by reconnecting. With a reader open
    the full disk stays full until the test frees it.
    """
    with closing(sqlite3.connect(path)) as db:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        yield db


class StoreFileCluster(Cluster):
    """A cluster whose SQLite store is ``store_path`` (``VOE_STORE_URL``), outside the data dir."""

    def __init__(self, tmp: Path, airline_url: str, store_path: Path, **plan_values: object
                 ) -> None:
        super().__init__(tmp, airline_url, **plan_values)
        self.store_path = store_path
        self.env["VOE_STORE_URL"] = f"sqlite:///{store_path}"

    def store_rows(self, table: str) -> list[dict]:
        """Every row of a table of the store file."""
        with closing(sqlite3.connect(self.store_path)) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(f"SELECT * FROM {table}")]


def logged(cluster: Cluster, level: str, text: str) -> int:
    """How many lines of sink.log at ``level`` hold ``text``."""
    return sum(1 for line in cluster.log("sink").splitlines()
               if f" {level} voe.sink[" in line and text in line)


def schema_of(url: str) -> str:
    """The schema a store URL of ``fresh_schema`` puts first in its ``search_path``."""
    options = parse_qs(urlsplit(url).query)["options"][0]
    return options.split("search_path=", 1)[1]


def as_user(url: str, user: str) -> str:
    """``url`` with ``user`` (and no password) instead of its own."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port or 5432}"))


def scrape(cluster: Cluster) -> dict[tuple[str, frozenset], float]:
    """Every sample of the sink's /metrics, keyed by name and labels."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.env['VOE_SINK_HTTP_PORT']}/metrics")
    if cluster.env.get("VOE_HTTP_TOKEN"):
        request.add_header("Authorization", f"Bearer {cluster.env['VOE_HTTP_TOKEN']}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def metric(cluster: Cluster, name: str, **labels: str) -> float:
    """One sample of the sink's /metrics; a missing one fails the test with its name."""
    samples = scrape(cluster)
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} not exposed"
    return samples[key]


def tcp_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process ``pid`` holds (read from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def pg_admin() -> Any:
    """A superuser connection to the test server (a context manager), or skip saying why."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (voe[postgres])")
    return psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5)


def sink_backends(admin: Any, sink_pid: int) -> set[int]:
    """The server PIDs of the connections the sink process ``sink_pid`` has open to PostgreSQL.

    Its connections say ``application_name = voe-sink``; other tests' sinks say so too,
    so the client port must also be one of this process's.
    """
    ports = tcp_ports(sink_pid)
    rows = admin.execute("SELECT pid, client_port FROM pg_stat_activity"
                         " WHERE application_name = %s", (sink.APPLICATION_NAME,)).fetchall()
    return {pid for pid, port in rows if port in ports}


def result(number: int, cycle: int = 1) -> Result:
    """A successful result of a made-up job ``number`` with two fares."""
    job = SearchJob(f"demo:AAA-B{number:05d}:2025-05-01", cycle, 1, "demo", "AAA",
                    f"B{number:05d}", "2025-05-01")
    fares = (Fare("VO1", "2025-05-01T08:00", "2025-05-01T10:00", "99.90", "EUR"),
             Fare("VO2", "2025-05-01T12:00", "2025-05-01T14:00", "120.00", "EUR"))
    return Result(job, "ok", fares, None, "w1", 0.1)


class FakeMaster:
    """The master's control port as a bare ROUTER: what the sink sends it, decoded."""

    def __init__(self, cluster: Cluster) -> None:
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        public, secret = server_keys(cluster.data_dir / "keys", "master")
        self.router.curve_server = True
        self.router.curve_publickey = public
        self.router.curve_secretkey = secret
        self.router.linger = 0
        self.router.bind(f"tcp://127.0.0.1:{cluster.env['VOE_CONTROL_PORT']}")
        self.push = cluster.curve_client(self.context.socket(zmq.PUSH), "sink")
        self.push.linger = 0
        self.push.connect(f"tcp://127.0.0.1:{cluster.env['VOE_RESULTS_PORT']}")
        self.acked: dict[str, str] = {}
        self.beats: list[str] = []

    def send(self, *results: Result) -> None:
        """Push results to the sink, as a worker does."""
        for one in results:
            self.push.send(protocol.encode_result(one))

    def listen(self, seconds: float) -> None:
        """Take what the sink sent for ``seconds``: acknowledgements and heartbeats."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not self.router.poll(max(1, int(left * 1000))):
                continue
            _, frame = self.router.recv_multipart()
            message = protocol.decode(frame)
            if isinstance(message, protocol.Acks):
                self.acked.update((ack.job_id, ack.status) for ack in message.acks)
            elif isinstance(message, protocol.Heartbeat):
                self.beats.append(message.waiting)

    def until(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        """Listen until ``predicate`` holds (bounded in time)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
            self.listen(0.1)

    def close(self) -> None:
        self.push.close(0)
        self.router.close(0)
        self.context.term()


# ---- the classification, store by store ----------------------------------------------------


def test_a_full_disk_is_unavailable_stores_nothing_and_passes(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        store = SqliteStore(disk / "fares.db")
        try:
            assert store.save([result(0)]) == ["done"]
            filler = disk / "filler"
            fill(filler)
            batch = [result(number) for number in range(1, 50)]
            with pytest.raises(StoreUnavailable) as failed:
                store.save(batch)
            assert failed.value.kind == "full"
            assert failed.value.reason == "database or disk is full"
            assert store.counts()["fares"] == 2  # nothing of the failed batch, not one row
            assert store.counts()["outcomes"]["ok"] == 1
            filler.unlink()
            assert store.save(batch) == ["done"] * len(batch)  # a fresh connection, same store
            assert store.result_count() == 50 and store.fare_count() == 100
            store.reconnect()
            assert store.save(batch) == ["done"] * len(batch)  # stored once
            assert store.fare_count() == 100
        finally:
            store.close()


def test_a_lock_held_too_long_is_unavailable_then_passes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "fares.db"
    with SqliteStore(path) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable) as failed:
            store.save([result(1)])
        assert (failed.value.kind, failed.value.reason) == ("locked", "database is locked")
        holder.execute("ROLLBACK")
        holder.close()
        assert store.save([result(1)]) == ["done"]


def test_sqlite_errors_that_do_not_pass_stay_fatal(tmp_path: Path) -> None:
    path = tmp_path / "fares.db"
    SqliteStore(path).close()
    with SqliteStore(path, readonly=True) as reader:
        with pytest.raises(StoreError) as readonly:
            reader.save([result(1)])
        assert not isinstance(readonly.value, StoreUnavailable), readonly.value
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="unknown schema version 99") as newer:
        SqliteStore(path)
    assert not isinstance(newer.value, StoreUnavailable)


def test_a_terminated_postgres_connection_is_unavailable_and_reopens() -> None:
    name = f"voe-test-{secrets.token_hex(4)}"
    with fresh_schema() as url, pg_admin() as admin:
        def terminate() -> int:
            return len(admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                     " WHERE application_name = %s", (name,)).fetchall())

        with open_store(url, application_name=name) as store:
            assert store.save([result(0)]) == ["done"]
            assert terminate() == 1
            with pytest.raises(StoreUnavailable) as failed:
                store.save([result(1)])
            assert failed.value.kind == "connection"
            assert "terminating connection" in failed.value.reason
            assert store.save([result(1)]) == ["done"]  # opened again on the next call
            assert store.result_count() == 2
            assert terminate() == 1
            store.reconnect()
            assert store.fare_count() == 4
            assert terminate() == 1
            with pytest.raises(StoreUnavailable):
                store.counts()
            assert store.counts()["fares"] == 4


def test_postgres_errors_that_do_not_pass_stay_fatal() -> None:
    with fresh_schema() as url, pg_admin() as admin:
        with pytest.raises(StoreError, match="does not exist") as refused:
            open_store(as_user(url, f"voe_nobody_{secrets.token_hex(4)}"))
        assert not isinstance(refused.value, StoreUnavailable)
        nowhere = urlunsplit(urlsplit(url)._replace(netloc=f"127.0.0.1:{free_port()}"))
        with pytest.raises(StoreUnavailable, match="refused"):  # a server restarting
            open_store(nowhere)
        open_store(url).close()
        admin.execute(f"INSERT INTO {schema_of(url)}.voe_schema VALUES (99, 0)")
        with pytest.raises(StoreError, match="newer than this voe") as newer:
            open_store(url)
        assert not isinstance(newer.value, StoreUnavailable)


def test_the_url_names_the_application_before_voe_does() -> None:
    with fresh_schema() as url, pg_admin() as admin:
        def names() -> set[str]:
            return {name for (name,) in admin.execute(
                "SELECT application_name FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                " AND application_name LIKE 'voe-test-%'")}

        own = f"voe-test-{secrets.token_hex(4)}"
        given = f"voe-test-{secrets.token_hex(4)}"
        with open_store(url, application_name=own):
            assert own in names()
        with open_store(f"{url}&application_name={given}", application_name=own):
            assert given in names() and own not in names()


def test_a_drainer_rides_out_a_terminated_store_connection(tmp_path: Path) -> None:
    import http.server

    from voe.sink.publish.outbox import Drainer
    from voe.sink.publish.webhook import WebhookPublisher

    received: set[str] = set()  # event ids: at least once, so maybe some twice

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server name)
            self.rfile.read(int(self.headers["Content-Length"]))
            received.add(self.headers["X-Voe-Event-Id"])
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Quiet: the test counts requests instead."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    name = f"voe-test-{secrets.token_hex(4)}"
    stop = threading.Event()
    try:
        with fresh_schema() as url, pg_admin() as admin, \
                open_store(url) as writer:
            publisher = WebhookPublisher(f"http://127.0.0.1:{server.server_address[1]}/hook",
                                         "secret", 3, 0.05, 5)
            drainer = Drainer(publisher, lambda: open_store(url, application_name=name), stop,
                              0.5)
            writer.save([result(number) for number in range(5)])
            drainer.start()
            wait_for(lambda: len(received) == 5, 30, "the first events published")
            for round_ in range(1, 4):
                terminated = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s", (name,)).fetchall()
                assert terminated, "the drainer had no connection to terminate"
                writer.save([result(number) for number in range(5 * round_, 5 * round_ + 5)])
                wait_for(lambda n=5 * round_ + 5: len(received) == n, 30,
                         "the drainer to publish again")
                assert drainer.is_alive()
            stop.set()
            drainer.join(10)
            assert not drainer.is_alive()
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    error = StoreUnavailable("cannot save: gone", "connection", "gone")
    wait = sink.StoreWait([], error, since=0.0)
    delays = [wait.failed(error, now=0.0) for _ in range(12)]
    for failure, delay in enumerate(delays):
        ceiling = min(sink.RETRY_FIRST_SECONDS * 2 ** failure, sink.RETRY_MAX_SECONDS)
        assert ceiling * (1 - sink.RETRY_JITTER) <= delay <= ceiling
    assert max(delays) <= sink.RETRY_MAX_SECONDS
    assert wait.describe(12.4) == "its store: gone (for 12 s)"


# ---- the sink in a run ---------------------------------------------------------------------


def test_the_sink_holds_a_batch_while_its_disk_is_full_and_beats_the_reason(
        tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "2m") as disk:
        cluster = StoreFileCluster(tmp_path, "http://127.0.0.1:9", disk / "fares.db")
        master = FakeMaster(cluster)
        try:
            child = cluster.sink()
            master.send(result(1))
            master.until(lambda: master.acked.get(result(1).job.id) == "done", 30,
                         "the first result acknowledged")
            master.until(lambda: master.beats and master.beats[-1] == "", 10,
                         "a heartbeat of a sink that stores")
            with reader(disk / "fares.db"):
                fill(disk / "filler")
                master.send(result(2))
                master.until(lambda: master.beats[-1].startswith(
                    "its store: database or disk is full (for "), 30, "a heartbeat saying why")
                assert logged(cluster, "WARNING", "waiting for the store SQLite") == 1
                assert logged(cluster, "WARNING", "; 1 results held, retrying in ") == 1
                master.send(*(result(number) for number in range(3, 6)))
                master.listen(1.5)  # several retries meanwhile, and beats
                assert result(2).job.id not in master.acked
                assert metric(cluster, "voe_sink_store_waiting") == 1
                assert metric(cluster, "voe_sink_results_held") == 1  # nothing more received
                assert metric(cluster, "voe_sink_store_errors_total", kind="full") >= 2
                assert master.beats[-1].startswith("its store: database or disk is full")
                (disk / "filler").unlink()
            master.until(lambda: all(master.acked.get(result(n).job.id) == "done"
                                     for n in range(1, 6)), 30, "every result acknowledged")
            master.until(lambda: master.beats[-1] == "", 10, "a heartbeat of a sink storing again")
            assert logged(cluster, "INFO", "store back after") == 1
            assert logged(cluster, "INFO", "; 1 results stored") == 1
            assert metric(cluster, "voe_sink_store_waiting") == 0
            assert metric(cluster, "voe_sink_results_held") == 0

            # Asked to stop while it waits, the sink stops at once; the batch is not acked.
            with reader(disk / "fares.db"):
                fill(disk / "filler")
                master.send(result(6))
                master.until(lambda: master.beats[-1] != "", 30, "the sink waiting again")
                started = time.monotonic()
                assert child.stop(timeout=10) == 0
                assert time.monotonic() - started < 3
            assert logged(cluster, "INFO", "stopping while waiting for the store: 1 results "
                                           "not stored") == 1
            assert "Traceback" not in cluster.log("sink")
            (disk / "filler").unlink()
            stored = {row["job_id"] for row in cluster.store_rows("results")}
            assert stored == {result(n).job.id for n in range(1, 6)}
        finally:
            cluster.stop()
            master.close()


def test_a_full_disk_mid_run_loses_and_doubles_nothing(tmp_path: Path, airlines) -> None:
    airline, verifier = airlines(latency_ms=200), airlines()
    with small_disk(tmp_path / "disk", "8m") as disk:
        # The store alone is on the small disk: the ledger and the logs stay in the data dir.
        cluster = StoreFileCluster(tmp_path, airline.url, disk / "fares.db", max_attempts=3,
                                   lease_seconds=60, days=DAYS, airports=AIRPORTS)
        try:
            child = cluster.sink()
            master = cluster.master()
            cluster.worker("w1", concurrency=2)
            wait_for(lambda: cluster.jobs()["done"] >= 5, 60, "some jobs done")
            with reader(disk / "fares.db"):
                fill(disk / "filler")
                wait_for(lambda: logged(cluster, "WARNING", "waiting for the store"), 60,
                         "the sink to wait for its store")
                assert metric(cluster, "voe_sink_store_waiting") == 1
                assert metric(cluster, "voe_sink_results_held") >= 1
                assert metric(cluster, "voe_sink_store_errors_total", kind="full") >= 1
                time.sleep(1)  # acknowledgements of batches stored before reach the ledger
                done = cluster.jobs()["done"]
                time.sleep(2)
                assert cluster.jobs()["done"] == done  # nothing stored, nothing acknowledged
                (disk / "filler").unlink()
            wait_for(lambda: "store back after" in cluster.log("sink"), 60,
                     "the store to take the held batch")
            assert cluster.wait_master(master, timeout=180) == 0
            assert child.poll() is None, "the sink ended"
            assert metric(cluster, "voe_sink_store_waiting") == 0
            assert_stored_exactly_once(cluster, verifier)
            assert len(cluster.ledger_rows()) == JOBS
            check = cluster.voe("check", check=False)
            assert check.returncode == 0, check.stdout + check.stderr
            assert "Traceback" not in cluster.log("sink")
        finally:
            cluster.stop()


def test_six_terminated_store_connections_lose_and_double_nothing(tmp_path: Path,
                                                                 airlines) -> None:
    airline, verifier = airlines(latency_ms=200), airlines()
    with fresh_schema() as url, pg_admin() as admin:
        cluster = Cluster(tmp_path, airline.url, max_attempts=3, lease_seconds=60, days=DAYS,
                          airports=AIRPORTS)
        cluster.env["VOE_STORE_URL"] = url
        try:
            child = cluster.sink()
            master = cluster.master()
            cluster.worker("w1", concurrency=2)
            wait_for(lambda: cluster.jobs()["done"] >= 5, 60, "some jobs done")
            for _ in range(TERMINATIONS):
                before = wait_for(lambda: sink_backends(admin, child.pid), 30,
                                  "the sink's store connection")
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE pid = ANY(%s)", (sorted(before),))
                wait_for(lambda before=before: (now := sink_backends(admin, child.pid))
                         and not now & before, 30, "the sink to connect again")
            assert cluster.jobs()["done"] < JOBS, "the run ended before the faults did"
            assert cluster.wait_master(master, timeout=180) == 0
            assert child.poll() is None, "the sink ended"
            waits = logged(cluster, "WARNING", "waiting for the store postgresql://")
            assert waits == logged(cluster, "INFO", "store back after") >= 1
            assert "Traceback" not in cluster.log("sink")
            assert_stored_exactly_once(cluster, verifier)
            assert len(cluster.ledger_rows()) == JOBS
            check = cluster.voe("check", check=False)
            assert check.returncode == 0, check.stdout + check.stderr
        finally:
            cluster.stop()


# ---- fatal store errors stay fatal --------------------------------------------------------


def test_a_store_newer_than_this_voe_ends_the_sink_in_one_line(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, "http://127.0.0.1:9")
    SqliteStore(cluster.data_dir / "fares.db").close()
    with closing(sqlite3.connect(cluster.data_dir / "fares.db")) as db:
        db.execute("PRAGMA user_version = 99")
    ended = subprocess.run([sys.executable, "-m", "voe", "sink", "--no-console"],
                           env=cluster.env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
    assert ended.returncode == 2
    assert "Traceback" not in ended.stderr
    assert ended.stderr.strip().count("\n") == 0, ended.stderr
    assert "unknown schema version 99" in ended.stderr


def test_a_login_refused_after_an_outage_ends_the_sink_in_one_line(tmp_path: Path) -> None:
    role = f"voe_test_{secrets.token_hex(4)}"
    with fresh_schema() as url, pg_admin() as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT USAGE, CREATE ON SCHEMA {schema_of(url)} TO {role}")
        cluster = Cluster(tmp_path, "http://127.0.0.1:9")
        cluster.env["VOE_STORE_URL"] = as_user(url, role)
        master = FakeMaster(cluster)
        try:
            child = cluster.spawn("sink", "sink", "--no-console")
            master.send(result(1))
            master.until(lambda: master.acked.get(result(1).job.id) == "done", 30,
                         "the first result acknowledged")
            admin.execute(f"ALTER ROLE {role} NOLOGIN")  # e.g. its password changed
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE usename = %s", (role,))
            master.send(result(2))
            wait_for(lambda: child.poll() is not None, 30, "the sink to end")
            assert child.poll() == 2
            stderr = child.stderr_path.read_text()
            assert "Traceback" not in stderr
            assert stderr.strip().count("\n") == 0, stderr
            assert stderr.startswith("voe sink: error: cannot connect to the PostgreSQL store")
            assert "not permitted to log in" in stderr
            assert "waiting for the store" in cluster.log("sink")
        finally:
            cluster.stop()
            master.close()
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE usename = %s", (role,))
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")
