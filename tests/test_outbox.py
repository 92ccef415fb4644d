"""The transactional outbox of both stores: events written with the fares, once, with stable ids."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import msgpack
import pytest

from tests import legacystores
from tests.postgres import fresh_schema
from voe.model import CalendarDay, Fare, Result, RoundTripFare, SearchJob
from voe.store import SqliteStore, open_store
from voe.store.rows import FARES_COLLECTED, PRICE_CHANGED, event_id


def _job(number: int = 0, cycle: int = 1, attempt: int = 1) -> SearchJob:
    return SearchJob(f"demo:GRU-REC:2025-05-0{number + 1}", cycle, attempt, "demo", "GRU", "REC",
                     f"2025-05-0{number + 1}")


def _ok(job: SearchJob, *prices: str) -> Result:
    fares = tuple(Fare(f"VO{index}", f"0{index}:00", f"1{index}:00", price, "BRL")
                  for index, price in enumerate(prices))
    return Result(job, "ok", fares, None, "w1", 0.1)


def _bodies(store, destination: str = "test") -> list[dict]:
    return [json.loads(event.body) for event in store.outbox_pending(destination, 1000)]


def test_one_fares_collected_event_per_stored_result(store) -> None:
    first, second = _ok(_job(0), "100.00", "120.50"), _ok(_job(1))
    assert store.save([first, first, second]) == ["done"] * 3
    events = store.outbox_pending("test", 100)
    assert [event.kind for event in events] == [FARES_COLLECTED] * 2
    assert [event.seq for event in events] == sorted(event.seq for event in events)
    body = json.loads(events[0].body)
    assert body["id"] == events[0].id == event_id(first.job.id, 1, FARES_COLLECTED)
    assert body["kind"] == FARES_COLLECTED and isinstance(body["occurred_at"], float)
    assert body["job"] == {"id": first.job.id, "cycle": 1, "backend": "demo", "origin": "GRU",
                           "destination": "REC", "date": "2025-05-01", "return_date": None,
                           "legs": "", "search": {"adults": 1, "children": 0, "infants": 0,
                                      "cabin": "economy", "pos": "", "currency": ""}}
    assert body["fares"] == [fare._asdict() for fare in first.fares]
    assert json.loads(events[1].body)["fares"] == []
    assert (events[0].backend, events[0].origin, events[0].destination) == ("demo", "GRU", "REC")


def test_a_redelivery_writes_no_event(store) -> None:
    result = _ok(_job(0), "100.00")
    store.save([result])
    store.save([result, _ok(_job(0, attempt=2), "999.00")])
    store.save([Result(_job(0, attempt=3), "transient", (), "boom", "w2", 1.0)])
    assert len(store.outbox_pending("test", 100)) == 1


def test_price_changes_against_the_previous_cycle(store) -> None:
    store.save([_ok(_job(0, cycle=1), "100.00", "200.00", "300.00")])
    store.save([_ok(_job(0, cycle=2), "100.0", "210.00", "290.00", "50.00")])  # VO3 is new
    store.save([_ok(_job(0, cycle=2, attempt=2), "1.00")])  # a redelivery: nothing new
    changed = [body for body in _bodies(store) if body["kind"] == PRICE_CHANGED]
    assert [(c["flight"], c["old_price"], c["new_price"], c["old_cycle"], c["new_cycle"])
            for c in changed] == [("VO1", "200.00", "210.00", 1, 2),
                                  ("VO2", "300.00", "290.00", 1, 2)]
    assert changed[0]["id"] == event_id(_job(0).id, 2, PRICE_CHANGED, "VO1")
    assert changed[0]["currency"] == "BRL" and changed[0]["job"]["cycle"] == 2
    assert len({body["id"] for body in _bodies(store)}) == len(_bodies(store)) == 4


def test_price_changes_skip_a_cycle_without_the_job_and_cover_one_batch(store) -> None:
    store.save([_ok(_job(0, cycle=1), "100.00"), _ok(_job(1, cycle=3), "5.00"),
                _ok(_job(1, cycle=1), "4.00")])  # two cycles of job 1 in one batch
    store.save([_ok(_job(0, cycle=3), "90.00")])  # cycle 2 failed: compared with cycle 1
    changed = [(b["job"]["id"], b["old_cycle"], b["new_cycle"], b["old_price"], b["new_price"])
               for b in _bodies(store) if b["kind"] == PRICE_CHANGED]
    assert changed == [(_job(1).id, 1, 3, "4.00", "5.00"), (_job(0).id, 1, 3, "100.00", "90.00")]


def test_events_off_write_none_and_on_again_compare_with_the_fares_stored_meanwhile(
        store) -> None:
    store.save([_ok(_job(0, cycle=1), "100.00")])
    store.keep_events(False)
    store.keep_events(False)  # twice is the same as once
    store.save([_ok(_job(0, cycle=2), "150.00"), _ok(_job(1, cycle=2), "70.00")])
    assert [body["job"]["cycle"] for body in _bodies(store)] == [1]  # only what came before
    store.keep_events(True)
    store.save([_ok(_job(0, cycle=3), "120.00"), _ok(_job(1, cycle=3), "70.00")])
    changed = [(body["old_price"], body["new_price"], body["old_cycle"])
               for body in _bodies(store) if body["kind"] == PRICE_CHANGED]
    assert changed == [("150.00", "120.00", 2)]  # against cycle 2, stored with events off
    assert [body["job"]["cycle"] for body in _bodies(store)
            if body["kind"] == FARES_COLLECTED] == [1, 3, 3]


def test_ids_are_stable_across_stores(tmp_path: Path) -> None:
    batches = [[_ok(_job(0, cycle=1), "10.00")], [_ok(_job(0, cycle=2), "11.00")]]
    ids = []
    for path in (tmp_path / "a.db", tmp_path / "b.db"):
        with SqliteStore(path) as store:
            for batch in batches:
                store.save(batch)
            ids.append([event.id for event in store.outbox_pending("x", 10)])
    assert ids[0] == ids[1] and len(ids[0]) == 3


def test_cursor_dead_letters_and_retry(store) -> None:
    store.save([_ok(_job(number), "1.00") for number in range(4)])
    seqs = [event.seq for event in store.outbox_pending("hook", 10)]
    assert store.outbox_backlog(["hook", "amqp"]) == {
        "amqp": {"backlog": 4, "dead": 0, "retrying": 0},
        "hook": {"backlog": 4, "dead": 0, "retrying": 0}}
    store.outbox_settle("hook", seqs[2], dead=[(seqs[1], 5, "HTTP 500")])
    assert [event.seq for event in store.outbox_pending("hook", 10)] == [seqs[3]]
    assert len(store.outbox_pending("amqp", 10)) == 4  # each destination has its own cursor
    store.outbox_settle("hook", seqs[0])  # a cursor never moves back
    assert [event.seq for event in store.outbox_pending("hook", 10)] == [seqs[3]]
    assert store.outbox_backlog()["hook"] == {"backlog": 1, "dead": 1, "retrying": 0}
    (letter,) = store.dead_letters()
    assert (letter["destination"], letter["seq"], letter["attempts"], letter["error"],
            letter["state"], letter["kind"]) == ("hook", seqs[1], 5, "HTTP 500", "dead",
                                                 FARES_COLLECTED)
    assert store.outbox_retries("hook", 10) == []
    assert store.retry_dead_letters("amqp") == 0
    assert store.retry_dead_letters() == 1
    assert [event.seq for event in store.outbox_retries("hook", 10)] == [seqs[1]]
    store.outbox_settle("hook", None, dead=[(seqs[1], 5, "HTTP 502")])  # failed again
    assert store.dead_letters("hook")[0]["attempts"] == 10
    store.retry_dead_letters("hook")
    store.outbox_settle("hook", None, delivered=[seqs[1]])
    assert store.dead_letters() == [] and store.outbox_retries("hook", 10) == []


def test_sqlite_store_of_version_1_migrates_and_keeps_prices(tmp_path: Path) -> None:
    from voe.store import sqlite as sqlite_store

    path = tmp_path / "fares.db"
    with closing(legacystores.sqlite_store(path, 1)) as db, db:  # as before the outbox
        db.execute("INSERT INTO results VALUES (1, ?, 'demo', 'GRU', 'REC', '2025-05-01', NULL,"
                   " 1, 'w1', 0)", (_job(0).id,))
        db.execute("INSERT INTO fares VALUES (1, ?, 'demo', 'GRU', 'REC', '2025-05-01', NULL,"
                   " 'VO0', 'a', 'b', '100.00', 'BRL')", (_job(0).id,))
    with pytest.raises(Exception, match="start the sink once to migrate"):
        SqliteStore(path, readonly=True)
    with SqliteStore(path) as store:
        assert store.fare_count() == 1
        store.save([_ok(_job(0, cycle=2), "80.00")])
        kinds = [(b["kind"], b.get("old_price")) for b in _bodies(store)]
    assert kinds == [(FARES_COLLECTED, None), (PRICE_CHANGED, "100.00")]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (sqlite_store.SCHEMA_VERSION,)


def test_postgres_store_of_version_2_migrates_and_keeps_prices() -> None:
    psycopg = pytest.importorskip("psycopg")
    from voe.store import postgres

    with fresh_schema() as url:
        with open_store(url) as store:
            store.save([_ok(_job(0), "100.00")])
        with psycopg.connect(url, autocommit=True) as db:  # back to the schema before the outbox
            db.execute("DELETE FROM voe_schema WHERE version > 2")
            db.execute("DROP TABLE outbox, outbox_cursors, outbox_dead, last_prices")
        with open_store(url) as store:
            store.save([_ok(_job(0, cycle=2), "80.00")])
            kinds = [(b["kind"], b.get("old_price")) for b in _bodies(store)]
        assert kinds == [(FARES_COLLECTED, None), (PRICE_CHANGED, "100.00")]
        with psycopg.connect(url, autocommit=True) as db:
            assert db.execute("SELECT MAX(version) FROM voe_schema").fetchone() == (
                postgres.SCHEMA_VERSION,)


def test_readonly_store_reads_the_backlog(tmp_path: Path) -> None:
    path = tmp_path / "fares.db"
    with SqliteStore(path) as store:
        store.save([_ok(_job(0), "1.00")])
    with SqliteStore(path, readonly=True) as reader:
        assert reader.outbox_backlog(["a"]) == {"a": {"backlog": 1, "dead": 0, "retrying": 0}}
        assert reader.dead_letters() == []


def test_prune_deletes_only_what_every_destination_passed_and_none_holds_dead(store) -> None:
    store.save([_ok(_job(number), "1.00") for number in range(5)])
    seqs = [event.seq for event in store.outbox_pending("a", 10)]
    store.outbox_settle("a", seqs[3], dead=[(seqs[1], 5, "HTTP 500")])
    store.outbox_settle("b", seqs[2])
    later = time.time() + 60
    assert store.outbox_prune([], later, 100) == 0
    assert store.outbox_prune(["a", "b"], time.time() - 60, 100) == 0  # all too recent
    assert store.outbox_prune(["a", "b", "new"], later, 100) == 0  # "new" passed nothing
    assert store.outbox_prune(["a", "b"], later, 1) == 1  # a chunk of one: seqs[0]
    assert store.outbox_prune(["a", "b"], later, 100) == 1  # seqs[2]; seqs[1] is dead for a
    assert [event.seq for event in store.outbox_pending("b", 10)] == seqs[3:]
    assert [row["seq"] for row in store.dead_letters("a")] == [seqs[1]]
    assert store.outbox_prune(["a"], later, 100) == 1  # b dropped from the settings: seqs[3]
    assert [event.seq for event in store.outbox_pending("c", 10)] == [seqs[1], seqs[4]]


def test_pruner_deletes_in_chunks_and_stops(tmp_path: Path, monkeypatch) -> None:
    from voe.sink.publish import prune

    path = tmp_path / "fares.db"
    with SqliteStore(path) as writer:
        writer.save([_ok(_job(number % 9, cycle=1 + number // 9), "1.00") for number in range(27)])
        last = writer.outbox_pending("hook", 100)[-1].seq
        writer.outbox_settle("hook", last)
    monkeypatch.setattr(prune, "CHUNK", 10)
    stop = threading.Event()
    pruner = prune.Pruner(["hook"], lambda: SqliteStore(path), stop, keep_seconds=0)
    assert pruner.prune_once() == 27
    assert pruner.prune_once() == 0
    pruner.every = 0.05
    pruner.start()
    stop.set()
    pruner.join(5)
    assert not pruner.is_alive()


def test_a_round_trips_events_carry_its_return_leg_and_compare_each_pair_of_flights(store):
    def trip(cycle: int, *prices: str) -> Result:
        job = _job(0, cycle)._replace(id="demo:GRU-REC:2025-05-01:2025-05-08",
                                      return_date="2025-05-08")
        fares = tuple(RoundTripFare("VO1", "08:00", "10:00", price, "BRL", back, "18:00", "20:00")
                      for back, price in zip(("VO2", "VO3"), prices, strict=True))
        return Result(job, "ok", fares, None, "w1", 0.1)

    store.save([trip(1, "300.00", "280.00")])
    store.save([trip(2, "300.00", "250.00")])  # the same outbound, the other return cheaper
    bodies = _bodies(store)
    assert bodies[0]["fares"][1] == {
        "flight": "VO1", "departure": "08:00", "arrival": "10:00", "price": "280.00",
        "currency": "BRL", "return_flight": "VO3", "return_departure": "18:00",
        "return_arrival": "20:00"}
    assert bodies[0]["job"]["return_date"] == "2025-05-08"
    assert [(b["flight"], b["old_price"], b["new_price"]) for b in bodies
            if b["kind"] == PRICE_CHANGED] == [("VO1 / VO3", "280.00", "250.00")]


def test_events_carry_the_search_options_and_compare_prices_of_one_search_only(store):
    def search(cycle: int, options: str, price: str) -> Result:
        job = _job(0, cycle)
        if options:
            job = job._replace(id=f"{job.id}/{options}", options=options)
        return _ok(job, price)

    store.save([search(1, "", "100.00"), search(1, "adults=2,pos=US", "40.00")])
    store.save([search(2, "", "100.00"), search(2, "adults=2,pos=US", "45.00")])
    bodies = _bodies(store)
    collected = [b["job"]["search"] for b in bodies if b["kind"] == FARES_COLLECTED]
    assert collected[1] == {"adults": 2, "children": 0, "infants": 0, "cabin": "economy",
                            "pos": "US", "currency": ""}
    changed = [b for b in bodies if b["kind"] == PRICE_CHANGED]
    assert [(b["job"]["search"]["adults"], b["old_price"], b["new_price"]) for b in changed] == [
        (2, "40.00", "45.00")]


def test_an_event_stored_before_search_options_reads_as_the_defaults(store):
    from voe.store.rows import event_from_row

    old = msgpack.packb(("2025-05-01", None, [("VO1", "08:00", "10:00", "9.00", "BRL")]))
    event = event_from_row((1, "x", FARES_COLLECTED, 1, "demo:GRU-REC:2025-05-01", "demo",
                            "GRU", "REC", 0.0, old))
    assert json.loads(event.body)["job"]["search"]["adults"] == 1


def test_a_calendars_events_carry_its_days_and_compare_each_days_price(store):
    def calendar(cycle: int, *prices: str) -> Result:
        job = _job(0, cycle)._replace(id="demo:GRU-REC:2025-05", date="2025-05")
        days = tuple(CalendarDay(f"2025-05-0{day}", price, "BRL")
                     for day, price in enumerate(prices, start=1))
        return Result(job, "ok", days, None, "w1", 0.1)

    store.save([calendar(1, "90.00", "80.00")])
    store.save([calendar(2, "90.00", "70.00")])
    bodies = _bodies(store)
    assert bodies[0]["fares"] == [{"date": "2025-05-01", "price": "90.00", "currency": "BRL"},
                                  {"date": "2025-05-02", "price": "80.00", "currency": "BRL"}]
    assert [(b["flight"], b["old_price"], b["new_price"]) for b in bodies
            if b["kind"] == PRICE_CHANGED] == [("2025-05-02", "80.00", "70.00")]
