"""`voe reparse`: a parser fix recovers a cycle from its kept pages, with no request made."""

from __future__ import annotations

import json
import urllib.request

from tests.cluster import Airline, Cluster, assert_stored_exactly_once


def airline_requests(airline: Airline) -> int:
    with urllib.request.urlopen(airline.url + "/stats", timeout=5) as answer:
        return json.load(answer)["requests"]


def collect_once(tmp_path, airline: Airline, **plan: object) -> Cluster:
    """One cycle of a small plan by a sink, a worker and a --once master, all stopped after."""
    cluster = Cluster(tmp_path, airline.url, **plan)
    try:
        cluster.sink()
        cluster.worker("w1")
        assert cluster.wait_master(cluster.master()) == 0
    finally:
        cluster.stop()
    return cluster


def test_reparse_recovers_a_cycle_without_asking_the_airline(tmp_path, example_backend):
    airline = Airline(tmp_path)
    try:
        cluster = collect_once(tmp_path, airline, backend="example-picky", max_attempts=2)
        jobs = cluster.ledger_rows()
        assert len(jobs) == 12 and all(job["state"] == "failed" for job in jobs)
        assert all(job["last_error"].startswith("page kept at ") for job in jobs)
        asked = airline_requests(airline)

        broken = json.loads(cluster.voe("reparse", "--json").stdout)
        assert broken["stored"] == 0 and len(broken["failing"]) == 12  # not fixed yet

        cluster.env["VOE_EXAMPLE_PICKY_FIXED"] = "1"  # the parser's fixed release
        one = cluster.voe("reparse", "--job", jobs[0]["id"]).stdout
        assert "re-parsed: 1 job(s) stored" in one, one
        rest = cluster.voe("reparse", "--backend", "example-picky", "--cycle", "1").stdout
        assert "re-parsed: 11 job(s) stored" in rest, rest
        again = cluster.voe("reparse").stdout
        assert "re-parsed: 0 job(s) stored" in again, again

        assert airline_requests(airline) == asked  # the airline saw none of it
        assert cluster.voe("check").returncode == 0
        assert_stored_exactly_once(cluster, airline)
    finally:
        airline.stop()


def test_reparse_says_what_it_cannot_do(tmp_path):
    airline = Airline(tmp_path, fail_routes=("GRU-REC",))
    try:
        cluster = collect_once(tmp_path, airline, max_attempts=1, airports='["GRU", "REC"]')
    finally:
        airline.stop()
    text = cluster.voe("reparse").stdout
    # 503 answers keep no page: nothing to re-read, and the user is told what to do instead.
    assert "have no kept page" in text and "voe failed retry" in text, text
    assert "re-parsed: 0 job(s) stored" in text
