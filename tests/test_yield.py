"""The yield watch: fares per successful page per backend and cycle, a drop by more than half
logged once by the sink and shown by `voe status`; and the per-field yields (share of fares
with each field valid), a drop logged once per backend, cycle and field."""

from __future__ import annotations

import logging
import subprocess
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import Airline, Cluster, wait_for
from voe.cli.report import field_yield_lines
from voe.model import OK, PARSE, Fare, FieldCount, Result, SearchJob
from voe.sink.yieldwatch import (
    CHECK_INTERVAL,
    MAX_SHARE,
    MIN_PAGES,
    FieldYield,
    YieldWatch,
    latest_field_yields,
    latest_yields,
)
from voe.sink.yieldwatch import MIN_FARES as FIELD_MIN_FARES
from voe.store.sqlite import SqliteStore


def result(cycle: int, number: int, fares: int, backend: str = "demo",
           status: str = OK) -> Result:
    job = SearchJob(id=f"{backend}:GRU-REC:2026-12-{number:02d}", cycle=cycle, attempt=1,
                    backend=backend, origin="GRU", destination="REC",
                    date=f"2026-12-{number:02d}")
    found = tuple(Fare(f"G3 {n}", "07:00", "08:00", "100.00", "BRL") for n in range(fares))
    return Result(job, status, found if status == OK else (), None, "w", 0.1)


def test_a_drop_is_logged_once_per_backend_and_cycle(tmp_path, caplog):
    store = SqliteStore(tmp_path / "fares.db")
    clock = [0.0]
    watch = YieldWatch(store, clock=lambda: clock[0])
    try:
        first = [result(1, n, 6) for n in range(1, 9)] + [result(1, n, 4, "demo-api")
                                                          for n in range(1, 9)]
        store.save(first)
        watch.saw(first)
        assert watch.check() == []
        second = [result(2, n, 2) for n in range(1, 9)] + [result(2, n, 3, "demo-api")
                                                           for n in range(1, 9)]
        second += [result(2, n, 0, status=PARSE) for n in range(10, 20)]  # failures: no pages
        store.save(second)
        drops = drops_once(watch, second, clock, caplog)  # once per backend and cycle
        assert [(d.backend, d.cycle, d.per_page, d.previous_per_page) for d in drops] == [
            ("demo", 2, 2.0, 6.0)]  # demo-api went from 4 to 3: not a drop
        assert caplog.text.count("parse yield of backend demo fell by more than half") == 1
        shown = [found.as_dict() for found in latest_yields(store)]
        assert shown == [
            {"backend": "demo", "cycle": 2, "pages": 8, "fares": 16, "fares_per_page": 2.0,
             "previous_cycle": 1, "previous_fares_per_page": 6.0, "dropped": True},
            {"backend": "demo-api", "cycle": 2, "pages": 8, "fares": 24, "fares_per_page": 3.0,
             "previous_cycle": 1, "previous_fares_per_page": 4.0, "dropped": False},
        ]
        few = [result(3, n, 0) for n in range(1, MIN_PAGES)]  # too few pages to judge
        store.save(few)
        watch.saw(few)
        assert watch.check(force=True) == []
    finally:
        store.close()


class _SlowStore:
    """A real store whose yield reads take ``seconds`` on the watch's fake clock."""

    def __init__(self, store: SqliteStore, clock: list[float], seconds: float) -> None:
        self.store, self.clock, self.seconds, self.reads = store, clock, seconds, 0

    def cycle_yields(self, cycle: int) -> dict[str, tuple[int, int]]:
        self.reads += 1
        self.clock[0] += self.seconds
        return self.store.cycle_yields(cycle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_slow_check_puts_the_next_one_off_so_checks_take_a_small_share_of_the_sink(
        tmp_path):
    store = SqliteStore(tmp_path / "fares.db")
    clock = [0.0]
    slow = _SlowStore(store, clock, seconds=1.0)  # a cycle's results take a second to read
    watch = YieldWatch(slow, clock=lambda: clock[0])
    try:
        stored = [result(1, n, 6) for n in range(1, 9)]
        store.save(stored)
        watch.saw(stored)
        watch.check()
        assert slow.reads == 1
        pause = 1.0 / MAX_SHARE
        assert pause > 2 * CHECK_INTERVAL
        for at in (CHECK_INTERVAL + 0.1, pause - 0.1):  # not yet: due one pause after the start
            clock[0] = at
            watch.saw(stored)
            watch.check()
            assert slow.reads == 1
        clock[0] = pause + 0.1
        watch.check()
        assert slow.reads == 2
        slow.seconds = 0.0  # a quick check brings the usual interval back
        clock[0] += 2 * pause
        watch.saw(stored)
        watch.check()
        watch.saw(stored)
        clock[0] += CHECK_INTERVAL + 0.1
        watch.check()
        assert slow.reads == 4
    finally:
        store.close()


def drops_once(watch: YieldWatch, stored: list[Result], clock: list[float],
               caplog: pytest.LogCaptureFixture) -> list[Any]:
    """The drops the watch reports for ``stored`` at its next check (its warnings captured),
    after checking that seeing the same results again later reports nothing more."""
    clock[0] += 10
    with caplog.at_level(logging.WARNING, logger="voe.sink"):
        watch.saw(stored)
        drops = watch.check()
        watch.saw(stored)
        clock[0] += 10
        assert watch.check() == []
    return drops


def two_cycles(cluster: Cluster, changed_url: str) -> subprocess.CompletedProcess[str]:
    """Run a cycle against the cluster's airline, then one whose worker searches the
    airline at ``changed_url``; return ``voe status`` as it was between the two."""
    cluster.sink()
    master = cluster.master()
    worker = cluster.worker("w1")
    assert cluster.wait_master(master, timeout=60) == 0
    worker.stop()
    first = cluster.status()
    master = cluster.master()
    cluster.worker("w2", airline_url=changed_url)
    assert cluster.wait_master(master, timeout=90) == 0
    return first


def test_the_sink_and_status_report_a_yield_drop_across_cycles(tmp_path):
    rich = Airline(tmp_path, options=("--flights", "6"))
    poor = Airline(tmp_path, options=("--flights", "2"))
    cluster = Cluster(tmp_path, rich.url)  # 12 jobs a cycle
    try:
        first = two_cycles(cluster, poor.url)  # the airline "changed its pages"
        wait_for(lambda: "fell by more than half" in cluster.log("sink"), 20,
                 "the sink to warn of the yield drop")
        second = cluster.status()
        text = cluster.voe("status").stdout
    finally:
        cluster.stop()
        rich.stop()
        poor.stop()
    assert first["yield"] == [{"backend": "demo", "cycle": 1, "pages": 12, "fares": 72,
                               "fares_per_page": 6.0, "previous_cycle": None,
                               "previous_fares_per_page": None, "dropped": False}]
    assert second["yield"] == [{"backend": "demo", "cycle": 2, "pages": 12, "fares": 24,
                                "fares_per_page": 2.0, "previous_cycle": 1,
                                "previous_fares_per_page": 6.0, "dropped": True}]
    assert "yield demo cycle 2: 2.0 fares/page on 12 pages (cycle 1: 6.0) DROPPED" in text
    assert cluster.log("sink").count("parse yield of backend demo fell by more than half") == 1


# Per-field yields (issue 12) -----------------------------------------------------------

def counted(cycle: int, number: int, fares: int, backend: str = "demo",
            invalid: dict[str, int] | None = None, attempt: int = 1) -> Result:
    """A result whose answer had ``fares`` fares, ``invalid[field]`` of them with the field
    invalid (then refused: a parse error), the others valid."""
    invalid = invalid or {}
    base = result(cycle, number, fares, backend, PARSE if invalid else OK)
    counts = tuple(FieldCount(field, fares - invalid.get(field, 0), invalid.get(field, 0))
                   for field in Fare._fields)
    return base._replace(job=base.job._replace(attempt=attempt), field_counts=counts)


def test_a_field_yield_drop_is_logged_once_per_backend_cycle_and_field(store, caplog):
    clock = [0.0]
    published: list[list[FieldYield]] = []
    watch = YieldWatch(store, clock=lambda: clock[0], on_field_yields=published.append)
    first = [counted(1, n, 6) for n in range(1, 11)] + [counted(1, n, 6, "demo-api")
                                                        for n in range(1, 11)]
    store.save(first)
    watch.saw(first)
    assert watch.check() == []
    # Cycle 2: four demo answers have four prices out of bounds (refused, each retried
    # once: a second attempt is another answer); demo-api loses three prices of 60 (95%).
    second = [counted(2, n, 6) for n in range(1, 7)]
    second += [counted(2, n, 6, invalid={"price": 4}, attempt=attempt)
               for n in range(7, 11) for attempt in (1, 2)]
    second += [counted(2, n, 6, "demo-api") for n in range(1, 8)]
    second += [counted(2, n, 6, "demo-api", invalid={"price": 1}) for n in range(8, 11)]
    store.save(second)
    store.save(second)  # redelivered: counted once
    drops = drops_once(watch, second, clock, caplog)  # once per backend, cycle and field
    assert [(d.backend, d.cycle, d.field, d.valid, d.invalid) for d in drops] == [
        ("demo", 2, "price", 36 + 16, 32)]
    assert drops[0].previous_share == 1.0 and drops[0].share == pytest.approx(52 / 84)
    assert caplog.text.count("field yield of backend demo fell for price") == 1
    assert caplog.text.count("field yield") == 1
    assert ("demo cycle 2: price valid in 61.9% of 84 fares, cycle 1: 100.0% - DROPPED"
            in caplog.text)
    assert {(f.backend, f.field): round(f.share, 3) for f in published[-1]} == {
        **{("demo", field): 1.0 for field in Fare._fields}, ("demo", "price"): 0.619,
        **{("demo-api", field): 1.0 for field in Fare._fields}, ("demo-api", "price"): 0.95}
    shown = [found.as_dict() for found in latest_field_yields(store)]
    assert [(f["backend"], f["field"]) for f in shown] == [
        (backend, field) for backend in ("demo", "demo-api") for field in Fare._fields]
    assert shown[3] == {"backend": "demo", "cycle": 2, "field": "price", "valid": 52,
                        "invalid": 32, "share": 0.619, "previous_cycle": 1,
                        "previous_share": 1.0, "dropped": True}
    assert shown[8]["share"] == 0.95 and not shown[8]["dropped"]  # above 90% of 100%
    assert field_yield_lines(shown) == [
        "field yield demo cycle 2 (84 fares): flight 100.0%, departure 100.0%, "
        "arrival 100.0%, price 61.9% DROPPED (cycle 1: 100.0%), currency 100.0%",
        "field yield demo-api cycle 2 (60 fares): flight 100.0%, departure 100.0%, "
        "arrival 100.0%, price 95.0%, currency 100.0%"]


def test_a_field_under_the_floor_drops_without_a_cycle_before_and_few_fares_say_nothing(
        store, caplog):
    watch = YieldWatch(store)
    # A new backend, refused on every answer: no stored result, yet its cycle is checked.
    bad = [counted(1, n, 6, "newair", invalid={"currency": 4}) for n in range(1, 11)]
    few = [counted(1, n, 4, "tiny", invalid={"flight": 4}) for n in range(1, 11)]  # 40 fares
    store.save(bad + few)
    watch.saw(bad + few)
    with caplog.at_level(logging.WARNING, logger="voe.sink"):
        drops = watch.check(force=True)
    assert [(d.backend, d.field, d.previous_cycle) for d in drops] == [
        ("newair", "currency", None)]  # a third valid: under the floor of half
    assert 40 < FIELD_MIN_FARES and "backend tiny" not in caplog.text
    assert latest_yields(store) == []  # nothing stored: no parse yield, only field yields


def test_the_sink_and_status_report_a_field_yield_drop(tmp_path):
    steady = Airline(tmp_path, options=("--flights", "6"))
    # The airline now writes prices that moved by up to 100% either way: beyond the bounds
    # the workers know for it (VOE_PRICE_MIN/MAX around its 150 to 5000 reais), many prices
    # are misreads to the fare pipeline, which refuses their answers.
    drifted = Airline(tmp_path, options=("--flights", "6", "--price-drift", "1", "--seed", "3"))
    cluster = Cluster(tmp_path, steady.url)  # 12 jobs a cycle, 72 fares
    cluster.env.update(VOE_PRICE_MIN="150", VOE_PRICE_MAX="5000")
    try:
        first = two_cycles(cluster, drifted.url)
        wait_for(lambda: "field yield of backend demo fell for price" in cluster.log("sink"), 20,
                 "the sink to warn of the price field's drop")
        second = cluster.status()
        text = cluster.voe("status").stdout
        share = next(f["share"] for f in second["field_yield"] if f["field"] == "price")
        port = int(cluster.env["VOE_SINK_HTTP_PORT"])
        # Every result is stored (the master finished); the watch checks within seconds.
        gauges = wait_for(lambda: (found := sink_metrics(port)).get(("demo", "price")) is not None
                          and abs(found["demo", "price"] - share) < 1e-4 and found, 10,
                          "the sink's gauge to show the price field's share")
    finally:
        cluster.stop()
        steady.stop()
        drifted.stop()
    assert [(f["field"], f["valid"], f["invalid"], f["dropped"]) for f in first["field_yield"]
            ] == [(field, 72, 0, False) for field in Fare._fields]
    by_field = {f["field"]: f for f in second["field_yield"]}
    price = by_field.pop("price")
    assert price["cycle"] == 2 and price["previous_cycle"] == 1 and price["dropped"]
    assert price["invalid"] > 0 and price["share"] < 0.9
    assert all(f["invalid"] == 0 and not f["dropped"] for f in by_field.values())
    assert f"price {price['share']:.1%} DROPPED (cycle 1: 100.0%)" in text
    assert text.count("field yield demo cycle 2") == 1
    log = cluster.log("sink")
    assert log.count("field yield of backend demo fell") == 1  # once, for price alone
    assert gauges["demo", "flight"] == 1.0


def sink_metrics(port: int) -> dict[tuple[str, str], float]:
    """The sink's ``voe_sink_field_yield`` gauges, by backend and field."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {(sample.labels["backend"], sample.labels["field"]): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == "voe_sink_field_yield"}
