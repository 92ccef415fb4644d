"""The demo airline, as a real subprocess on loopback, plus its fares and pages in-process."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import REPO, http_get, launch_airline
from lxml import etree

from voe.demo.airline.fares import AIRPORTS, UnknownAirport, UnknownRoute, fares_for
from voe.demo.airline.pages import error_page, format_brl, results_page
from voe.model import Fare

QUERY = "origin=GRU&destination=REC&date=2026-12-01"
CLOCK = re.compile(r"\d{2}:\d{2}")


def get_json(url: str) -> tuple[int, dict]:
    status, headers, body = http_get(url)
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


def html_rows(page: bytes) -> list[dict[str, str]]:
    """Read the results table with plain XPath (independent of the demo backend)."""
    root = etree.fromstring(page, etree.HTMLParser())
    rows = root.xpath("//table[@id='results']//tr[@class='flight']")
    return [{cell.get("class"): "".join(cell.itertext()).strip() for cell in row} for row in rows]


def brl_to_decimal_string(text: str) -> str:
    assert text.startswith("R$ ")
    return text[3:].replace(".", "").replace(",", ".")


def test_airports_cover_the_main_brazilian_airports() -> None:
    expected = "GRU GIG SDU CGH BSB REC SSA FOR POA CWB CNF MAO".split()
    assert set(expected) <= set(AIRPORTS)


def test_fares_are_well_formed_and_deterministic() -> None:
    counts = set()
    prices = []
    for day in range(1, 29):
        date = f"2026-02-{day:02d}"
        fares = fares_for("GRU", "REC", date)
        assert fares == fares_for("GRU", "REC", date)
        counts.add(len(fares))
        for fare in fares:
            assert isinstance(fare, Fare)
            assert re.fullmatch(r"(G3|LA|AD) \d{4}", fare.flight)
            assert CLOCK.fullmatch(fare.departure) and CLOCK.fullmatch(fare.arrival)
            assert fare.departure < fare.arrival
            assert re.fullmatch(r"\d+\.\d{2}", fare.price)
            assert fare.currency == "BRL"
            prices.append(float(fare.price))
    assert counts <= set(range(3, 9)) and len(counts) > 2
    assert min(prices) >= 150 and max(prices) <= 4999.99
    assert any(price > 1000 for price in prices)
    assert fares_for("GRU", "REC", "2026-02-01") != fares_for("REC", "GRU", "2026-02-01")
    assert len(fares_for("GIG", "SSA", "2026-12-01", flights=60)) == 60
    assert fares_for("GIG", "SSA", "2026-12-01", flights=0) == []


def test_fares_do_not_depend_on_the_python_hash_seed() -> None:
    code = "from voe.demo.airline import fares\nprint(fares.fares_for('POA', 'MAO', '2027-01-31'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
            timeout=60, env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {f"{fares_for('POA', 'MAO', '2027-01-31')}\n"}


def test_unknown_airports_and_routes_are_rejected() -> None:
    with pytest.raises(UnknownAirport, match="unknown airport XXX"):
        fares_for("GRU", "XXX", "2026-12-01")
    with pytest.raises(UnknownRoute):
        fares_for("GRU", "GRU", "2026-12-01")
    with pytest.raises(ValueError):
        fares_for("GRU", "REC", "2026-02-30")


def test_prices_are_shown_the_brazilian_way() -> None:
    assert format_brl("1234.56") == "R$ 1.234,56"
    assert format_brl("150.00") == "R$ 150,00"
    assert format_brl("1234567.89") == "R$ 1.234.567,89"


def test_pages_escape_text() -> None:
    hostile = Fare("<script>x</script>", "05:00", "06:00", "150.00", "BRL")
    page = results_page("GRU", "REC", "<b>", [hostile])
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>" not in page
    assert "<em>" not in error_page("404", "<em>no</em>")


def test_html_and_json_agree(airline_url: str) -> None:
    status, headers, page = http_get(f"{airline_url}/search?{QUERY}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    status, payload = get_json(f"{airline_url}/api/search?{QUERY}")
    assert status == 200
    rows = html_rows(page)
    assert len(rows) == len(payload["fares"]) >= 3
    for row, fare in zip(rows, payload["fares"], strict=True):
        assert row["flight"] == fare["flight"]
        assert row["departure"] == fare["departure"]
        assert row["arrival"] == fare["arrival"]
        assert brl_to_decimal_string(row["price"]) == fare["price"]
        assert fare["currency"] == "BRL"
    expected = [fare._asdict() for fare in fares_for("GRU", "REC", "2026-12-01")]
    assert payload["fares"] == expected


def test_answers_are_deterministic(airline_url: str) -> None:
    first = http_get(f"{airline_url}/search?{QUERY}")[2]
    assert http_get(f"{airline_url}/search?{QUERY}")[2] == first
    assert http_get(f"{airline_url}/search?origin=GRU&destination=REC&date=2026-12-02")[2] != first


@pytest.mark.parametrize("endpoint", ["/search", "/api/search"])
def test_errors_are_json(airline_url: str, endpoint: str) -> None:
    url = f"{airline_url}{endpoint}"
    assert get_json(f"{url}?origin=GRU&destination=XXX&date=2026-12-01") == (
        404, {"error": "unknown airport XXX"})
    assert get_json(f"{url}?origin=GRU&destination=GRU&date=2026-12-01")[0] == 404
    for query in ("origin=GRU&destination=REC&date=2026-13-01",
                  "origin=GRU&destination=REC&date=tomorrow",
                  "origin=GRU&destination=REC",
                  "origin=GR1&destination=REC&date=2026-12-01",
                  ""):
        status, payload = get_json(f"{url}?{query}")
        assert status == 400 and payload["error"]


def test_unknown_paths_get_an_html_error_page(airline_url: str) -> None:
    status, headers, body = http_get(f"{airline_url}/nowhere")
    assert status == 404 and headers["Content-Type"].startswith("text/html")
    assert b"/nowhere" in body


def test_fail_routes_answer_503(demo_airline) -> None:
    url = demo_airline(fail_routes=["GRU-XXX", "gru-rec"])
    for endpoint in ("/search", "/api/search"):
        for destination in ("XXX", "REC"):
            status, payload = get_json(
                f"{url}{endpoint}?origin=GRU&destination={destination}&date=2026-12-01")
            assert status == 503 and "GRU-" in payload["error"]
        assert http_get(f"{url}{endpoint}?origin=REC&destination=GRU&date=2026-12-01")[0] == 200


def test_latency_applies_and_requests_run_concurrently(demo_airline) -> None:
    url = demo_airline(latency_ms=300)
    started = time.monotonic()
    assert http_get(f"{url}/api/search?{QUERY}")[0] == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _: http_get(f"{url}/search?{QUERY}")[0], range(20)))
    assert statuses == [200] * 20
    assert time.monotonic() - started < 3.0  # 20 x 0.3 s would be 6 s one at a time
    stats = json.loads(http_get(f"{url}/stats")[2])
    assert stats["requests"] == 21 and stats["in_flight"] == 0
    assert stats["max_in_flight"] >= 10


def test_keep_alive_responses_are_not_delayed(airline_url: str) -> None:
    parts = urlsplit(airline_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        started = time.monotonic()
        for _ in range(20):
            connection.request("GET", f"/search?{QUERY}")
            response = connection.getresponse()
            assert response.status == 200 and response.read()
        # Nagle plus delayed ACKs would stall each reused connection's answer by ~40 ms.
        assert time.monotonic() - started < 0.6
    finally:
        connection.close()


def test_stats_count_search_requests(demo_airline) -> None:
    url = demo_airline()
    status, stats = get_json(f"{url}/stats")
    assert status == 200
    assert stats == {"requests": 0, "in_flight": 0, "max_in_flight": 0, "rate": 0.0,
                     "per_second": [], "statuses": {}, "faults": {}, "clients": {},
                     "streaming": 0, "js_page": {"assets": {}, "fares": 0, "consents": 0,
                                                 "returning": 0}}
    http_get(f"{url}/search?{QUERY}")
    http_get(f"{url}/api/search?{QUERY}")
    http_get(f"{url}/api/search?origin=GRU&destination=XXX&date=2026-12-01")
    http_get(f"{url}/nowhere")
    stats = get_json(f"{url}/stats")[1]
    assert (stats["requests"], stats["in_flight"], stats["max_in_flight"]) == (3, 0, 1)
    assert stats["statuses"] == {"200": 2, "404": 1}
    assert stats["clients"] == {"127.0.0.1": {"requests": 3, "in_flight": 0, "max_in_flight": 1}}
    assert sum(count for _, count in stats["per_second"]) == 3
    assert stats["rate"] == pytest.approx(3 / 5)  # three requests in the 5 s window


def test_big_pages_for_benchmarks(demo_airline) -> None:
    url = demo_airline(flights=60)
    status, _, page = http_get(f"{url}/search?{QUERY}")
    assert status == 200
    assert 25_000 <= len(page) <= 40_000
    assert len(html_rows(page)) == 60


def _raw_get(address: tuple[str, int], path: str) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: airline\r\nConnection: close\r\n\r\n".encode())
    return sock


def _read_status(sock: socket.socket) -> int:
    with sock:
        data = b""
        for _ in range(1000):  # bounded: a response is far below 1000 chunks
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_handles_300_concurrent_connections(demo_airline) -> None:
    url = demo_airline(latency_ms=500)
    parts = urlsplit(url)
    address = (parts.hostname, parts.port)
    started = time.monotonic()
    sockets = [_raw_get(address, f"/api/search?{QUERY}") for _ in range(300)]
    statuses = [_read_status(sock) for sock in sockets]
    assert statuses == [200] * 300
    assert time.monotonic() - started < 10
    assert json.loads(http_get(f"{url}/stats")[2])["max_in_flight"] >= 200


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stops_cleanly_on_signals(tmp_path: Path, signum: int) -> None:
    airline = launch_airline(tmp_path)
    try:
        assert http_get(f"{airline.url}/api/search?{QUERY}")[0] == 200
        airline.process.send_signal(signum)
        assert airline.process.wait(timeout=10) == 0
    finally:
        airline.stop()
    log = airline.output()
    assert f"demo airline listening on {airline.url}" in log
    assert "GET /api/search" not in log  # the access log is at DEBUG, not INFO
    assert "Traceback" not in log


def _statuses(url: str, path: str, count: int) -> list[int]:
    return [http_get(f"{url}{path}")[0] for _ in range(count)]


def test_faults_are_deterministic_with_a_seed(tmp_path: Path) -> None:
    """Two airlines with the same seed answer the same URL's n-th request alike."""
    runs = []
    for seed in (7, 7, 8):
        airline = launch_airline(tmp_path, seed=seed, error_rate=0.5)
        try:
            runs.append(_statuses(airline.url, f"/api/search?{QUERY}", 30))
        finally:
            airline.stop()
    assert runs[0] == runs[1] != runs[2]
    assert set(runs[0]) <= {200, 500, 502, 503} and 200 in runs[0] and len(set(runs[0])) > 1


def test_throttled_answers_say_when_to_come_back(demo_airline) -> None:
    url = demo_airline(throttle_rate=1.0, retry_after=3)
    status, headers, body = http_get(f"{url}/search?{QUERY}")
    assert status == 429 and headers["Retry-After"] == "3"
    assert json.loads(body) == {"error": "slow down"}


def test_a_per_client_rate_limit_answers_429(demo_airline) -> None:
    url = demo_airline(rate_limit=5)
    statuses = _statuses(url, f"/api/search?{QUERY}", 12)
    assert statuses[:5] == [200] * 5 and 429 in statuses  # a burst of one second, then 429
    stats = json.loads(http_get(f"{url}/stats")[2])
    assert stats["faults"]["rate_limit"] == statuses.count(429)
    assert stats["statuses"] == {"200": statuses.count(200), "429": statuses.count(429)}
    time.sleep(0.5)
    assert http_get(f"{url}/api/search?{QUERY}")[0] == 200  # tokens come back with time


def test_resets_drop_the_connection_without_an_answer(demo_airline) -> None:
    url = demo_airline(reset_rate=1.0)
    parts = urlsplit(url)
    sock = _raw_get((parts.hostname, parts.port), f"/search?{QUERY}")
    with sock, pytest.raises(ConnectionResetError):
        for _ in range(100):  # bounded: the reset comes at the first read
            if not sock.recv(65536):
                raise AssertionError("closed without a reset")
    stats = json.loads(http_get(f"{url}/stats")[2])
    assert stats["statuses"] == {"reset": 1} and stats["faults"] == {"reset": 1}
    assert stats["in_flight"] == 0


def test_truncated_answers_are_short_but_well_framed(demo_airline, airline_url) -> None:
    url = demo_airline(truncate_rate=1.0, seed=3)
    for path in (f"/search?{QUERY}", f"/api/search?{QUERY}"):
        status, headers, body = http_get(f"{url}{path}")
        full = http_get(f"{airline_url}{path}")[2]
        assert status == 200 and int(headers["Content-Length"]) == len(body)
        assert 0.05 * len(full) < len(body) < 0.95 * len(full) and full.startswith(body)


def test_malformed_new_layout_and_js_pages_carry_the_same_fares(demo_airline) -> None:
    fares = fares_for("GRU", "REC", "2026-12-01")
    sloppy_page = http_get(f"{demo_airline(malformed_rate=1.0)}/search?{QUERY}")[2]
    assert b"<TD class=price>" in sloppy_page and b"</td>" not in sloppy_page
    assert [row["price"] for row in html_rows(sloppy_page)] == [
        format_brl(fare.price).replace(" ", "\xa0") for fare in fares]
    new_page = http_get(f"{demo_airline(layout='new')}/search?{QUERY}")[2]
    assert b'id="results"' not in new_page and new_page.count(b'class="offer"') == len(fares)
    for fare in fares:
        assert format_brl(fare.price)[3:].encode() in new_page
    url = demo_airline()
    js_page = http_get(f"{url}/js/search?{QUERY}")[2]
    assert b'table.id = "results"' in js_page and b"<table" not in js_page  # only the script
    assert http_get(f"{url}/js/search?origin=GRU&destination=XXX&date=2026-12-01")[0] == 404


def test_slow_answers_are_delayed(demo_airline) -> None:
    url = demo_airline(slow_rate=1.0, slow_ms=400)
    started = time.monotonic()
    assert http_get(f"{url}/api/search?{QUERY}")[0] == 200
    assert time.monotonic() - started >= 0.4
    assert json.loads(http_get(f"{url}/stats")[2])["faults"] == {"slow": 1}


def test_bad_fault_options_are_refused(tmp_path: Path) -> None:
    from voe.demo.airline.server import make_app

    for options in ({"error_rate": 2}, {"layout": "fancy"}, {"slow_ms": -1},
                    {"rate_limit": -1.0}):
        with pytest.raises(ValueError):
            make_app(**options)
    result = subprocess.run([sys.executable, "-m", "voe", "demo-airline", "--throttle-rate", "x"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--throttle-rate" in result.stderr
    assert "Traceback" not in result.stderr
