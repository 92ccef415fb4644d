"""The built-in backends against the real demo airline, hostile pages and the registry."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from conftest import REPO, free_port, http_get

from voe import __version__
from voe.backends import (
    InstalledBackends,
    UnknownBackend,
    available_backends,
    get_backend,
    register,
)
from voe.backends.base import BlockedError, ParseError, PermanentError, TransientError
from voe.backends.null import NullBackend
from voe.demo.airline.fares import fares_for
from voe.demo.airline.pages import results_page
from voe.demo.backends.api import DemoApiBackend, parse_fares
from voe.demo.backends.page import DemoBackend
from voe.demo.backends.parse import parse_results
from voe.demo.backends.price import parse_price
from voe.model import Fare, MultiCityFare, SearchJob
from voe.worker.http import new_session

HTTP_BACKENDS = ["demo", "demo-api"]


def job(origin: str = "GRU", destination: str = "REC", date: str = "2026-12-01",
        backend: str = "demo") -> SearchJob:
    return SearchJob(id=f"{backend}:{origin}-{destination}:{date}", cycle=1, attempt=1,
                     backend=backend, origin=origin, destination=destination, date=date)


def api_fares(url: str, search: SearchJob) -> list[Fare]:
    query = f"origin={search.origin}&destination={search.destination}&date={search.date}"
    status, _, body = http_get(f"{url}/api/search?{query}")
    assert status == 200
    return [Fare(**item) for item in json.loads(body)["fares"]]


@pytest.fixture
def session(make_settings) -> Iterator[requests.Session]:
    """A session without retries, so each error shows at once (retries: tests/test_http.py)."""
    http = new_session(make_settings(voe_concurrency=4, voe_http_retries=0))
    yield http
    http.close()


@pytest.mark.parametrize("name", HTTP_BACKENDS)
def test_backends_return_the_api_fares(airline_url, make_settings, session, name) -> None:
    backend = get_backend(name, make_settings(voe_demo_airline_url=airline_url))
    assert backend.name == name
    for origin, destination, date in [("GRU", "REC", "2026-12-01"), ("MAO", "POA", "2027-03-15"),
                                      ("SDU", "CGH", "2026-07-04")]:
        search = job(origin, destination, date, name)
        fares = backend.search(search, session)
        assert fares == api_fares(airline_url, search)
        assert all(type(fare) is Fare and type(fare.price) is str for fare in fares)


@pytest.mark.parametrize("name", HTTP_BACKENDS)
def test_backends_read_big_and_empty_pages(demo_airline, make_settings, session, name) -> None:
    for flights in (60, 0):
        url = demo_airline(flights=flights)
        backend = get_backend(name, make_settings(voe_demo_airline_url=url))
        fares = backend.search(job(), session)
        assert len(fares) == flights
        assert fares == api_fares(url, job())
    assert any(float(fare.price) > 1000 for fare in fares_for("GRU", "REC", "2026-12-01", 60))


@pytest.mark.parametrize("name", HTTP_BACKENDS)
def test_unknown_airport_is_permanent(airline_url, make_settings, session, name) -> None:
    backend = get_backend(name, make_settings(voe_demo_airline_url=airline_url))
    with pytest.raises(PermanentError, match="unknown airport XXX"):
        backend.search(job(destination="XXX"), session)


@pytest.mark.parametrize("name", HTTP_BACKENDS)
def test_failing_route_is_transient(demo_airline, make_settings, session, name) -> None:
    url = demo_airline(fail_routes=["GRU-XXX"])
    backend = get_backend(name, make_settings(voe_demo_airline_url=url))
    with pytest.raises(TransientError) as caught:
        backend.search(job(destination="XXX"), session)
    assert not isinstance(caught.value, ParseError)
    assert "503" in str(caught.value)


@pytest.mark.parametrize("name", HTTP_BACKENDS)
def test_airline_down_is_transient(make_settings, session, name) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    backend = get_backend(name, make_settings(voe_demo_airline_url=url))
    with pytest.raises(TransientError):
        backend.search(job(), session)


@pytest.mark.parametrize("name", HTTP_BACKENDS)
def test_slow_airline_times_out_as_transient(demo_airline, make_settings, session, name) -> None:
    url = demo_airline(latency_ms=1000)
    backend = get_backend(name, make_settings(voe_demo_airline_url=url, voe_http_timeout=0.2))
    with pytest.raises(TransientError):
        backend.search(job(), session)


@dataclass
class HostileAirline:
    """A stdlib HTTP server on loopback answering every GET with ``reply``."""

    url: str
    reply: tuple[int, str, bytes] = (200, "text/html", b"")
    user_agents: list[str] = field(default_factory=list)


@pytest.fixture
def hostile_airline() -> Iterator[HostileAirline]:
    airline = HostileAirline(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
            airline.user_agents.append(self.headers.get("User-Agent", ""))
            status, content_type, body = airline.reply
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    airline.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield airline
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_status_codes_map_to_error_kinds(hostile_airline, make_settings, session) -> None:
    settings = make_settings(voe_demo_airline_url=hostile_airline.url)
    cases = [
        (429, BlockedError), (500, TransientError), (502, TransientError),
        (404, PermanentError), (400, PermanentError), (403, BlockedError),
    ]
    for backend in (DemoBackend(settings), DemoApiBackend(settings)):
        for status, kind in cases:
            hostile_airline.reply = (status, "application/json", b'{"error": "nope nope"}')
            with pytest.raises(kind, match="nope nope") as caught:
                backend.search(job(), session)
            assert not isinstance(caught.value, ParseError)


def test_hostile_pages_are_parse_errors_with_the_page(hostile_airline, make_settings,
                                                       session) -> None:
    settings = make_settings(voe_demo_airline_url=hostile_airline.url)
    page = b"<html><body><p>Under maintenance</p></body></html>"
    hostile_airline.reply = (200, "text/html", page)
    for backend in (DemoBackend(settings), DemoApiBackend(settings)):
        with pytest.raises(ParseError) as caught:
            backend.search(job(), session)
        assert caught.value.page == page
    assert hostile_airline.user_agents == [f"voe/{__version__}"] * 2


def good_page(fares: list[Fare]) -> bytes:
    return results_page("GRU", "REC", "2026-12-01", fares).encode()


FARE = Fare("G3 1234", "07:00", "08:10", "1234.56", "BRL")
HOSTILE_PAGES = {
    "empty": b"",
    "blank": b"  \n ",
    "no table": b"<html><body><table id='other'><tr class='flight'></tr></table></body></html>",
    "garbage": random.Random(7).randbytes(4000),
    "nul bytes": b"\x00" * 100,
    "json": b'{"fares": []}',
    "letters": good_page([FARE]).replace(b"R$ 1.234,56", b"R$ abc"),
    "negative": good_page([FARE]).replace(b"R$ 1.234,56", b"R$ -1.234,56"),
    "zero": good_page([FARE]).replace(b"R$ 1.234,56", b"R$ 0,00"),
    # "R$ 1.234" (no cents) is whole reais, read since prices go through price-parser;
    # one decimal digit is still no price format.
    "one decimal": good_page([FARE]).replace(b"R$ 1.234,56", b"R$ 1.234,5"),
    "other currency": good_page([FARE]).replace(b"R$ 1.234,56", b"US$ 1.234,56"),
    "missing price": good_page([FARE]).replace(b'<td class="price">R$ 1.234,56</td>', b""),
    "empty flight": good_page([FARE]).replace(b'class="flight">G3 1234<', b'class="flight"><'),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PAGES))
def test_parse_rejects_hostile_pages(name: str) -> None:
    page = HOSTILE_PAGES[name]
    with pytest.raises(ParseError) as caught:
        parse_results(page)
    assert caught.value.page == page


def test_parse_reads_good_pages() -> None:
    fares = fares_for("CWB", "FOR", "2026-09-09", flights=60)
    assert parse_results(good_page(fares)) == fares
    assert parse_results(good_page([])) == []
    nested = good_page([FARE]).replace(b">R$ 1.234,56<", b"><b>R$</b>&nbsp;1.234,56<")
    assert parse_results(nested) == [FARE]


@pytest.mark.parametrize(("text", "price"), [
    ("R$ 1.234,56", "1234.56"), ("R$ 150,00", "150.00"), ("  R$\xa01.234.567,89 ", "1234567.89"),
    ("R$ 999,99", "999.99"), ("R$1234,50", "1234.50"),
    ("R$ 10", "10.00"),  # whole reais: refused before prices went through price-parser
])
def test_parse_price(text: str, price: str) -> None:
    assert parse_price(text) == price


@pytest.mark.parametrize("text", [
    "", "R$", "R$ abc", "R$ -10,00", "R$ 0,00", "R$ 10,5", "R$ 1,234.56", "R$ 12.34,56",
    "10,00", "R$ 1.234,567", "R$ \u0661\u0662,\u0663\u0664", "R$ 1.234,56 + taxas",
])
def test_parse_price_rejects_odd_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_price(text)


@pytest.mark.parametrize("payload", [
    b"", b"not json", b"[]", b'{"fares": {}}', b'{"results": []}', b'{"fares": [1]}',
    b'{"fares": [{"flight": "G3 1", "departure": "07:00", "arrival": "08:00", "currency": "BRL"}]}',
    b'{"fares": [{"flight": "G3 1", "departure": "07:00", "arrival": "08:00", "price": 12.5,'
    b' "currency": "BRL"}]}',
    b'{"fares": [{"flight": "G3 1", "departure": "07:00", "arrival": "08:00", "price": "12.5",'
    b' "currency": "BRL"}]}',
    b'{"fares": [{"flight": "G3 1", "departure": "07:00", "arrival": "08:00", "price": "-1.00",'
    b' "currency": "BRL"}]}',
    b'{"fares": [{"flight": "G3 1", "departure": "07:00", "arrival": "08:00", "price": "1.00",'
    b' "currency": "reais"}]}',
    b"\xff\xfe\x00garbage",
])
def test_api_parse_rejects_odd_answers(payload: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        parse_fares(payload)
    assert caught.value.page == payload


def test_null_backend_is_deterministic_and_offline(make_settings) -> None:
    backend = get_backend("null", make_settings())
    assert isinstance(backend, NullBackend) and backend.name == "null"
    fares = backend.search(job(backend="null"), None)
    assert len(fares) == 5 and fares == backend.search(job(backend="null"), None)
    assert fares != backend.search(job(destination="SSA", backend="null"), None)
    assert all(float(fare.price) >= 150 and fare.currency == "BRL" for fare in fares)


def test_registry_lists_the_built_ins(make_settings) -> None:
    backends = available_backends()
    for name in ("demo", "demo-api", "demo-js", "null"):
        assert backends[name] == "built-in"
    assert isinstance(get_backend("demo", make_settings()), DemoBackend)
    assert isinstance(get_backend("demo-api", make_settings()), DemoApiBackend)
    with pytest.raises(UnknownBackend, match="available: demo, demo-api, demo-js, ") as caught:
        get_backend("nope", make_settings())
    assert "'nope'" in str(caught.value) and "null" in str(caught.value)


def test_registry_loads_entry_points_and_skips_broken_ones(tmp_path, monkeypatch, caplog,
                                                           make_settings) -> None:
    (tmp_path / "voe_test_plugin.py").write_text(textwrap.dedent("""
        class PluginBackend:
            name = "plugin"

            def __init__(self, settings):
                self.settings = settings

            def search(self, job, http):
                return []
    """))
    dist_info = tmp_path / "voe_test_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: voe-test-plugin\n"
                                        "Version: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[voe.backends]\n"
        "plugin = voe_test_plugin:PluginBackend\n"
        "broken = voe_test_plugin_missing:Backend\n"
        "demo = voe_test_plugin:PluginBackend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    backends = available_backends()
    assert backends["plugin"] == "voe_test_plugin:PluginBackend"
    assert backends["demo"] == "built-in"
    assert "broken" not in backends
    assert "failed to load" in caplog.text and "broken" in caplog.text
    settings = make_settings()
    plugin = get_backend("plugin", settings)
    assert plugin.name == "plugin" and plugin.settings is settings
    assert isinstance(get_backend("demo", settings), DemoBackend)
    with pytest.raises(UnknownBackend):
        get_backend("broken", settings)


def test_installed_names_load_only_the_entry_point_asked_about(tmp_path, monkeypatch,
                                                              caplog) -> None:
    """A plan checked against ``InstalledBackends`` imports only the plugins it names."""
    for module in ("voe_lazy_a", "voe_lazy_b"):
        (tmp_path / f"{module}.py").write_text("class Backend:\n    name = 'x'\n")
        monkeypatch.delitem(sys.modules, module, raising=False)
    dist_info = tmp_path / "voe_lazy-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: voe-lazy\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[voe.backends]\nlazy-a = voe_lazy_a:Backend\nlazy-b = voe_lazy_b:Backend\n"
        "lazy-broken = voe_lazy_missing:Backend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    installed = InstalledBackends()
    assert "null" in installed and "nope" not in installed and 3 not in installed
    assert "voe_lazy_a" not in sys.modules and "voe_lazy_b" not in sys.modules
    assert "lazy-a" in installed
    assert "voe_lazy_a" in sys.modules and "voe_lazy_b" not in sys.modules
    assert "failed to load" not in caplog.text
    assert "lazy-broken" not in installed and "failed to load" in caplog.text
    assert sorted(installed) == sorted(available_backends()) and "lazy-b" in list(installed)
    assert len(installed) == len(available_backends())


def test_register_adds_a_backend_in_process(monkeypatch, make_settings) -> None:
    monkeypatch.setattr("voe.backends.registry._registered", {})
    register("custom", NullBackend)
    assert available_backends()["custom"] == "voe.backends.null:NullBackend"
    assert isinstance(get_backend("custom", make_settings()), NullBackend)
    with pytest.raises(ValueError):
        register("demo", NullBackend)


def test_session_pools_fit_concurrency_and_retry_by_settings(make_settings) -> None:
    http = new_session(make_settings(voe_concurrency=40, voe_http_retries=5,
                                     voe_http_backoff=0.25))
    adapter = http.get_adapter("http://127.0.0.1/")
    assert adapter._pool_maxsize == 40 and adapter._pool_block is False
    assert adapter.max_retries.total == 0  # urllib3 never retries: the chain's Retries do
    middlewares = {type(m).__name__: m for m in http.chain.middlewares}
    assert middlewares["Retries"].retries == 5 and middlewares["Retries"].backoff == 0.25
    assert http.headers["User-Agent"] == f"voe/{__version__}"
    assert middlewares["Timeouts"].timeout == (5.0, 10.0)
    http.close()


def test_session_reuses_and_closes_connections(airline_url, make_settings) -> None:
    http = new_session(make_settings())
    for _ in range(5):
        assert http.get(f"{airline_url}/stats", timeout=5).status_code == 200
    pools = http.get_adapter(airline_url).poolmanager.pools
    (pool,) = [pools[key] for key in pools.keys()]
    assert pool.num_connections == 1
    http.close()
    assert pool.pool is None  # idle sockets closed now, not whenever the GC runs


LIVENESS_CHECK = """
from gevent import monkey; monkey.patch_all()
import sys, gevent, requests
from voe.worker.http import new_session
from voe.settings import load

url = sys.argv[1] + "/stats"
for name, http in (("voe", new_session(load("/nonexistent/.env"))), ("plain", requests.Session())):
    http.get(url, timeout=5)
    pools = http.get_adapter(url).poolmanager.pools
    (pool,) = [pools[key] for key in pools.keys()]
    others = []
    gevent.spawn(others.append, 1)
    idle = pool.pool.queue[-1]
    alive = idle.is_connected
    print(name, alive, bool(others))
    gevent.sleep(0)
"""


def test_liveness_check_does_not_yield_to_the_gevent_hub(airline_url, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", LIVENESS_CHECK, airline_url], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=True)
    lines = result.stdout.split("\n")
    assert lines[0] == "voe True False"  # alive, checked without letting another greenlet run
    assert lines[1] == "plain True True"  # urllib3's own check yields (the trap it avoids)


def test_a_round_trip_job_is_refused_unless_its_backend_reads_return_legs() -> None:
    from voe.backends.base import PermanentError, check_search
    from voe.model import SearchJob

    one_way = SearchJob("demo:GRU-REC:2026-12-07", 1, 1, "demo", "GRU", "REC", "2026-12-07")
    round_trip = one_way._replace(id="demo:GRU-REC:2026-12-07:2026-12-14",
                                  return_date="2026-12-14")

    class OneWay:
        name = "demo"

    class Both:
        name = "demo"
        round_trips = True

    check_search(OneWay(), one_way)
    check_search(Both(), one_way)
    check_search(Both(), round_trip)
    with pytest.raises(PermanentError, match=r"backend 'demo' does not search round trips .*"
                                             r"return 2026-12-14\) would store one-way prices"):
        check_search(OneWay(), round_trip)


def test_a_job_with_search_options_is_refused_unless_its_backend_sends_them() -> None:
    from voe.backends.base import PermanentError, check_search
    from voe.model import SearchJob

    job = SearchJob("demo:GRU-REC:2026-12-07/adults=2,cabin=business", 1, 1, "demo", "GRU",
                    "REC", "2026-12-07", None, "adults=2,cabin=business")

    class Plain:
        name = "demo"

    class PartyOnly:
        name = "demo"
        search_options = frozenset({"adults", "children", "infants"})

    class Everything:
        name = "demo"
        search_options = frozenset({"adults", "children", "infants", "cabin", "pos",
                                    "currency"})

    check_search(Everything(), job)
    check_search(Plain(), job._replace(options=""))
    with pytest.raises(PermanentError, match=r"does not send adults, cabin to the airline "
                                             r"\(its search_options: none\)"):
        check_search(Plain(), job)
    with pytest.raises(PermanentError, match=r"does not send cabin .*adults, children, infants"):
        check_search(PartyOnly(), job)


def test_a_multi_city_or_calendar_job_is_refused_unless_its_backend_reads_them() -> None:
    from voe.backends.base import PermanentError, check_search
    from voe.model import SearchJob

    legs = "GRU-REC:2026-12-07,REC-SSA:2026-12-09"
    trip = SearchJob(f"demo:{legs}", 1, 1, "demo", "GRU", "SSA", "2026-12-07", None, "", legs)
    month = SearchJob("demo:GRU-REC:2026-12", 1, 1, "demo", "GRU", "REC", "2026-12")

    class Plain:
        name = "demo"

    class Both:
        name = "demo"
        multi_city = True
        calendars = True

    check_search(Both(), trip)
    check_search(Both(), month)
    with pytest.raises(PermanentError, match="does not search multi-city trips"):
        check_search(Plain(), trip)
    with pytest.raises(PermanentError, match="does not read airline calendars"):
        check_search(Plain(), month)


def test_api_parse_reads_a_multi_city_fare_only_for_the_searchs_legs() -> None:
    import json

    search = {"legs": [{"origin": "GRU", "destination": "REC", "date": "2026-12-20"},
                       {"origin": "REC", "destination": "SSA", "date": "2026-12-23"}]}
    legs = [{**search["legs"][0], "flight": "G3 1", "departure": "07:00", "arrival": "09:00"},
            {**search["legs"][1], "flight": "AD 2", "departure": "10:00", "arrival": "11:30"}]
    fare = {"legs": legs, "price": "480.00", "currency": "BRL"}
    answer = parse_fares(json.dumps({"search": search, "fares": [fare]}).encode())
    assert answer.answered.legs == "GRU-REC:2026-12-20,REC-SSA:2026-12-23"
    assert answer == [MultiCityFare("G3 1", "07:00", "09:00", "480.00", "BRL",
                                    (("AD 2", "10:00", "11:30"),))]
    for odd, why in (({**fare, "legs": legs[:1]}, "fare 1: a multi-city fare of this search "
                                                  "has 2 legs"),
                     ({**fare, "legs": [legs[0], {**legs[1], "destination": "POA"}]},
                      "fare 1: leg 2 flies REC-POA:2026-12-23, the search's leg 2 is "
                      "REC-SSA:2026-12-23"),
                     ({**fare, "legs": [legs[0], {**legs[1], "flight": ""}]},
                      "fare 1: leg 2 flight is missing")):
        payload = json.dumps({"search": search, "fares": [odd]}).encode()
        with pytest.raises(ParseError, match=why) as caught:
            parse_fares(payload)
        assert caught.value.page == payload
