"""The parse-yield watch: fares per successful page per backend and cycle; a drop by more than
half is logged once by the sink and shown by `voe status`."""

from __future__ import annotations

import logging

from tests.cluster import Airline, Cluster, wait_for
from voe.model import OK, PARSE, Fare, Result, SearchJob
from voe.store.sqlite import SqliteStore
from voe.yieldwatch import MIN_PAGES, YieldWatch, latest_yields


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
        clock[0] += 10
        with caplog.at_level(logging.WARNING, logger="voe.sink"):
            watch.saw(second)
            drops = watch.check()
            watch.saw(second)
            clock[0] += 10
            assert watch.check() == []  # once per backend and cycle
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


def test_the_sink_and_status_report_a_yield_drop_across_cycles(tmp_path):
    rich = Airline(tmp_path, options=("--flights", "6"))
    poor = Airline(tmp_path, options=("--flights", "2"))
    cluster = Cluster(tmp_path, rich.url)  # 12 jobs a cycle
    try:
        cluster.sink()
        master = cluster.master()
        worker = cluster.worker("w1")
        assert cluster.wait_master(master, timeout=60) == 0
        worker.stop()
        first = cluster.status()
        master = cluster.master()
        cluster.worker("w2", airline_url=poor.url)  # the airline "changed its pages"
        assert cluster.wait_master(master, timeout=60) == 0
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
