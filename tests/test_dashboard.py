"""The master's dashboard (issue 8) in headless Chromium during a real run: the counts it
shows are `voe status --json`'s (workers with their address and errors, the events outbox),
its Retry button re-queues a dead letter, its outbox button re-sends webhook dead letters,
and a screenshot. Then with a hundred dead letters and a plan changed under an open cycle:
the cycle's own fares and the change, dead letters one line high and paged, every panel
within two screens; and workers' jobs/s. And a job waiting to retry, from a real ledger."""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cdp import Browser, Page
from tests.cluster import ROOT, SMALL_PLAN, Airline, Cluster, wait_for
from tests.test_publish import SECRET, Receiver
from voe.demo.airline.fares import AIRPORTS
from voe.master.ledger import Ledger

pytestmark = [
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="headless Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("websocket") is None,
                       reason="the browser extra is not installed (pip install -e '.[browser]')"),
]

# A daily cycle keeps the master (and its dashboard) up once the first cycle is over.
DAILY_PLAN = SMALL_PLAN.replace('cycle = "once"', 'cycle = "1d"').format(
    max_attempts=2, lease_seconds=20, days=1, backend="demo", airports='["GRU", "REC", "SSA"]')
# What the page shows, read in the page.
SHOWN = """JSON.stringify({
  loaded: document.body.dataset.loaded === "true",
  jobs: Object.fromEntries(["pending", "leased", "done", "failed"].map(
    (state) => [state, Number(document.getElementById("jobs-" + state).textContent)])),
  fares: Number(document.getElementById("fares").textContent),
  faresAll: Number(document.getElementById("fares-all").textContent),
  cycle: document.getElementById("cycle-number").textContent,
  workers: [...document.querySelectorAll("#workers tbody tr")].map((row) => row.dataset.worker),
  addresses: [...document.querySelectorAll("#workers tbody tr")].map(
    (row) => row.cells[1].textContent),
  errors: [...document.querySelectorAll("#workers tbody tr")].map(
    (row) => Number(row.cells[7].textContent)),
  identities: [...document.querySelectorAll("#workers tbody tr")].map(
    (row) => row.cells[10].textContent),
  outbox: Object.fromEntries([...document.querySelectorAll("#outbox tbody tr")].filter(
    (row) => row.dataset.destination).map((row) => [row.dataset.destination,
      [1, 2, 3].map((index) => Number(row.cells[index].textContent))])),
  resend: !document.getElementById("outbox-retry").disabled,
  dead: [...document.querySelectorAll("#dead-letters tbody tr")].map(
    (row) => [Number(row.dataset.cycle), row.dataset.jobId, row.cells[4].textContent]),
  audit: document.getElementById("audit-ok").textContent,
  throughput: document.querySelectorAll("#throughput polyline").length,
  prices: document.querySelectorAll("#prices circle").length,
  message: document.getElementById("message").textContent,
})"""
TIMEOUT = 30.0


def shown(page: Page) -> dict:
    """The dashboard's numbers as the page shows them now ({} while it is still loading)."""
    raw = page.evaluate(SHOWN, time.monotonic() + TIMEOUT)
    return json.loads(raw) if raw else {}


def page_shows(page: Page, predicate, what: str) -> dict:
    """Wait (bounded) until what the page shows satisfies ``predicate``; return it."""
    found: dict = {}

    def check() -> bool:
        found.clear()
        found.update(shown(page))
        return bool(found.get("loaded") and predicate(found))

    try:
        wait_for(check, TIMEOUT, what, interval=0.25)
    except AssertionError:
        raise AssertionError(f"{what}; the page shows {found}") from None
    return found


def test_the_dashboard_shows_status_and_retries_a_dead_letter(tmp_path):
    broken = Airline(tmp_path, fail_routes=("GRU-REC",))  # 503 for GRU-REC: a dead letter
    cluster = Cluster(tmp_path, broken.url, plan=DAILY_PLAN)  # 6 jobs
    receiver = Receiver()  # a webhook that fails at first: its events become dead letters
    receiver.failing = True
    cluster.env.update({"VOE_WEBHOOK_URLS": receiver.url, "VOE_WEBHOOK_SECRET": SECRET,
                        "VOE_WEBHOOK_MAX_ATTEMPTS": "1", "VOE_WEBHOOK_BACKOFF": "0.01"})
    destination = f"webhook:{receiver.url}"
    url = f"http://127.0.0.1:{cluster.env['VOE_HTTP_PORT']}/"
    browser = Browser(pages=1)
    fixed = None
    try:
        cluster.sink()
        cluster.spawn("master", "master", "--plan", str(cluster.plan_path))
        cluster.worker("w1")
        wait_for(lambda: cluster.jobs() == {"pending": 0, "leased": 0, "done": 5, "failed": 1},
                 90, "the first cycle to end with one dead letter")
        wait_for(lambda: (lambda status: status["workers"] and status["workers"][0]["errors"]
                          and status["workers"][0]["identities"]
                          and status["outbox"]["destinations"][destination]["backlog"] == 0
                          and status["outbox"]["dead_letters"] == 5)(cluster.status()),
                 30, "the worker's errors and the five events' dead letters in the status")
        status = cluster.status()
        [worker] = status["workers"]
        assert worker["errors"] == 2  # GRU-REC's two attempts; lease expiries would add
        assert worker["address"].startswith("127.0.0.1 (")
        with browser.page(TIMEOUT) as page:
            deadline = time.monotonic() + TIMEOUT
            page.call("Emulation.setDeviceMetricsOverride", {
                "width": 1280, "height": 1300, "deviceScaleFactor": 1, "mobile": False}, deadline)
            page.call("Page.navigate", {"url": url}, deadline)
            seen = page_shows(page, lambda s: s["loaded"] and s["jobs"] == status["jobs"]
                              and s["audit"] != "–" and s["throughput"] > 0
                              and s["errors"] == [2] and s["outbox"],
                              "the dashboard to show the status")
            # The routes arrive after the audit: pick GRU-SSA once the list holds it.
            wait_for(lambda: page.evaluate(
                "(() => { const route = document.getElementById('route');"
                " if (![...route.options].some((option) => option.value === 'GRU-SSA'))"
                " return false; route.value = 'GRU-SSA';"
                " route.dispatchEvent(new Event('change')); return true; })()",
                time.monotonic() + TIMEOUT), TIMEOUT, "GRU-SSA in the routes", interval=0.25)
            plotted = page_shows(page, lambda s: s["prices"] > 0, "GRU-SSA's price history")
            assert plotted["prices"] == 1  # one departure date, one cycle
            assert seen["fares"] == status["cycle"]["fares"] == status["fares"] > 0
            assert seen["faresAll"] == status["fares"]  # one cycle: the same fares
            assert seen["cycle"] == str(status["cycle"]["number"])
            assert seen["workers"] == [worker["worker"]]
            assert seen["addresses"] == [worker["address"]]
            # Its identities: no proxies here, so one direct route that met no block.
            assert [route["route"] for route in worker["identities"]] == ["direct"]
            assert re.fullmatch(r"direct: 0 blocked, \d+ retired, \d+ jobs",
                                seen["identities"][0]), seen["identities"]
            assert seen["outbox"] == {destination: [0, 0, 5]} and seen["resend"]
            assert seen["audit"] == "OK"
            [(cycle, job_id, error)] = seen["dead"]
            assert (cycle, job_id) == (1, f"demo:GRU-REC:{job_id.rsplit(':', 1)[1]}")
            assert "503" in error

            shot = page.call("Page.captureScreenshot", {"format": "png",
                                                        "captureBeyondViewport": True}, deadline)
            png = tmp_path / "dashboard.png"
            png.write_bytes(base64.b64decode(shot["data"]))

            broken.stop()  # the airline recovers (same port, no fault), then: Retry
            fixed = Airline(tmp_path, port=broken.port)
            clicked = page.evaluate(
                f"(() => {{ const row = [...document.querySelectorAll('#dead-letters tbody tr')]"
                f".find((r) => r.dataset.jobId === {json.dumps(job_id)});"
                " row.querySelector('button.retry').click(); return true; })()",
                time.monotonic() + TIMEOUT)
            assert clicked is True
            after = page_shows(page, lambda s: s["jobs"]["done"] == 6 and not s["dead"],
                               "the retried job to be done and its dead letter gone")
            assert after["jobs"] == {"pending": 0, "leased": 0, "done": 6, "failed": 0}
            assert f"job {job_id} (cycle 1) sent back to pending" in after["message"]

            wait_for(lambda: cluster.status()["outbox"]["dead_letters"] == 6, 30,
                     "the retried job's event to be a dead letter too")
            receiver.failing = False  # the webhook is back: re-send its dead letters
            clicked = page.evaluate("(() => { document.getElementById('outbox-retry').click();"
                                    " return true; })()", time.monotonic() + TIMEOUT)
            assert clicked is True
            resent = page_shows(page, lambda s: s["outbox"] == {destination: [0, 0, 0]}
                                and not s["resend"] and "sent back" in s["message"],
                                "the webhook's dead letters to be delivered")
            assert "6 dead letter(s) sent back" in resent["message"]
        wait_for(lambda: len(receiver.bodies) == 6, 30, "every event at the webhook")
        assert cluster.jobs() == {"pending": 0, "leased": 0, "done": 6, "failed": 0}
        retried = [row for row in cluster.ledger_rows() if row["id"] == job_id]
        assert retried[0]["state"] == "done" and retried[0]["attempt"] == 1
    finally:
        browser.stop()
        cluster.stop()
        receiver.close()
        broken.stop()
        if fixed is not None:
            fixed.stop()
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000


# A hundred dead letters: eleven airports (110 routes, one date), two attempts each, and an
# airline that answers 503 to every route but those from GRU (10 done, 100 failed).
HUNDRED_AIRPORTS = [airport for airport in AIRPORTS if airport != "MAO"]
HUNDRED_FAILING = tuple(f"{origin}-{destination}" for origin in HUNDRED_AIRPORTS
                        for destination in HUNDRED_AIRPORTS
                        if origin != destination and origin != "GRU")
HUNDRED_PLAN = SMALL_PLAN.replace('cycle = "once"', 'cycle = "1d"').format(
    max_attempts=2, lease_seconds=600, days=1, backend="demo",
    airports=json.dumps(HUNDRED_AIRPORTS))
# The plan the master is restarted with while cycle 2 is open: two dates, another name.
CHANGED_PLAN = HUNDRED_PLAN.replace('name = "test"', 'name = "test-b"').replace(
    "days_ahead = 1", "days_ahead = 2")
# Where the panels are, in CSS pixels from the top of the page.
PANELS = """JSON.stringify({
  height: document.documentElement.scrollHeight,
  panels: [...document.querySelectorAll("main > section")].map((panel) => [panel.id,
    Math.round(panel.getBoundingClientRect().top + window.scrollY),
    Math.round(panel.getBoundingClientRect().bottom + window.scrollY)]),
})"""
# The dead letters as the page shows them.
DEAD = """JSON.stringify({
  loaded: document.body.dataset.loaded === "true",
  rows: [...document.querySelectorAll("#dead-letters tbody tr")].map((row) => ({
    job: row.dataset.jobId, error: row.cells[4].textContent, title: row.cells[4].title,
    height: row.getBoundingClientRect().height,
    cut: row.cells[4].scrollWidth > row.cells[4].clientWidth,
    wrap: getComputedStyle(row.cells[4]).whiteSpace,
    overflow: getComputedStyle(row.cells[4]).textOverflow})),
  range: (document.getElementById("dead-range") || {}).textContent,
  previous: !(document.getElementById("dead-previous") || {disabled: true}).disabled,
  next: !(document.getElementById("dead-next") || {disabled: true}).disabled,
  count: document.getElementById("dead-count").textContent,
  lineHeight: parseFloat(getComputedStyle(document.getElementById("dead-letters")).lineHeight),
})"""


def status_of(cluster: Cluster) -> dict:
    """`voe status --json`, whatever its exit status (1 while a cycle waits for a master)."""
    return json.loads(cluster.voe("status", "--json", check=False).stdout)


def http_call(port: int, method: str, path: str) -> tuple[int, dict]:
    """One JSON request to the master's HTTP port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request(method, path)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def read(page: Page, expression: str) -> dict:
    """A JSON.stringify expression evaluated in the page ({} when it gives nothing)."""
    raw = page.evaluate(expression, time.monotonic() + TIMEOUT)
    return json.loads(raw) if raw else {}


def page_reads(page: Page, expression: str, predicate, what: str) -> dict:
    """Wait (bounded) until ``expression`` read in the page satisfies ``predicate``."""
    found: dict = {}

    def check() -> bool:
        found.clear()
        found.update(read(page, expression))
        return bool(found and predicate(found))  # {} while the page is (re)loading

    try:
        wait_for(check, TIMEOUT, what, interval=0.25)
    except AssertionError:
        raise AssertionError(f"{what}; the page shows {found}") from None
    return found


def _serves(url: str) -> bool:
    """Whether the master's HTTP port answers ``url`` (its page) with 200 yet."""
    port = int(url.rsplit(":", 1)[1].strip("/"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def open_dashboard(page: Page, url: str, width: int = 1280, height: int = 800) -> None:
    """Load the dashboard in a window of ``width`` x ``height`` CSS pixels, once the
    master's port serves it (a page opened before would stay Chromium's error page)."""
    wait_for(lambda: _serves(url), TIMEOUT, "the master's HTTP port to serve the dashboard")
    deadline = time.monotonic() + TIMEOUT
    page.call("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, deadline)
    page.call("Page.navigate", {"url": url}, deadline)


class Hundred:
    """Cycle 1 ended with 10 jobs done and 100 dead letters; cycle 2 was started (its 110
    jobs in the ledger, a few leased for ten minutes to a worker that was killed), then the
    master was restarted with another plan: cycle 2 is open under a changed plan, with no
    fare stored yet, and no worker."""

    def __init__(self, tmp: Path) -> None:
        self.airline = Airline(tmp, fail_routes=HUNDRED_FAILING)
        self.cluster = Cluster(tmp, self.airline.url, plan=HUNDRED_PLAN)
        # `voe status` (and so /api/status) compares the open cycle with VOE_PLAN's plan.
        self.cluster.env["VOE_PLAN"] = str(self.cluster.plan_path)
        self.port = int(self.cluster.env["VOE_HTTP_PORT"])
        self.url = f"http://127.0.0.1:{self.port}/"
        self.browser = Browser(pages=1)
        cluster = self.cluster
        cluster.sink()
        first = cluster.spawn("master", "master", "--plan", str(cluster.plan_path))
        worker = cluster.worker("w1", concurrency=8)
        wait_for(lambda: cluster.jobs() == {"pending": 0, "leased": 0, "done": 10, "failed": 100},
                 120, "cycle 1 to end with 100 dead letters")
        wait_for(lambda: http_call(self.port, "GET", "/api/master")[1]["cycles"] == [], 30,
                 "the master to close cycle 1")
        # The master expands a cycle into the ledger as workers ask for jobs: let the worker
        # lease a few from an airline that takes a minute to answer, then kill it.
        self.airline.stop()
        self.airline = Airline(tmp, latency_ms=60_000, port=self.airline.port)
        assert http_call(self.port, "POST", "/api/cycles")[0] == 201
        wait_for(lambda: sum(row["cycle"] == 2 for row in cluster.ledger_rows()) == 110, 30,
                 "cycle 2's jobs in the ledger")
        first.stop()  # first, or it would fail the leases of a worker gone unreachable
        worker.popen.kill()  # nothing it holds gets done
        worker.popen.wait(10)
        cluster.plan_path.write_text(CHANGED_PLAN)
        cluster.spawn("master-b", "master", "--plan", str(cluster.plan_path))
        # Until it runs, cycle 2 cannot finish: `voe status` says so and exits 1.
        wait_for(lambda: (status_of(cluster)["master"]["running"]
                          and self._answers("/api/master")), 30, "the restarted master")
        self.status = cluster.status()
        assert self.status["cycle"]["number"] == 2
        assert self.status["cycle"]["plan_changed"] == {"plan": "test-b", "jobs_kept": 110,
                                                       "plan_jobs": 220}

    def _answers(self, path: str) -> bool:
        try:
            return http_call(self.port, "GET", path)[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.browser.stop()
        self.cluster.stop()
        self.airline.stop()


@pytest.fixture(scope="module")
def hundred(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hundred]:
    tmp = tmp_path_factory.mktemp("hundred")
    started: list[Hundred] = []
    try:
        started.append(Hundred(tmp))
        yield started[0]
    finally:
        for running in started:
            running.stop()


def test_the_cycle_panel_shows_the_cycles_fares_and_a_plan_change(hundred):
    status = hundred.status
    assert status["cycle"]["fares"] == 0 < status["fares"]  # cycle 2 has none yet
    with hundred.browser.page(TIMEOUT) as page:
        open_dashboard(page, hundred.url)
        seen = page_reads(page, """JSON.stringify({
          loaded: document.body.dataset.loaded === "true",
          cycle: document.getElementById("cycle-number").textContent,
          fares: document.getElementById("fares").textContent,
          all: (document.getElementById("fares-all") || {}).textContent,
          changed: (document.getElementById("plan-changed") || {}).textContent,
          hidden: (document.getElementById("plan-changed") || {hidden: true}).hidden,
          top: document.getElementById("cycle-panel").getBoundingClientRect().top,
          bottom: document.getElementById("cycle-panel").getBoundingClientRect().bottom,
          lineTop: (document.getElementById("plan-changed") || document.body)
            .getBoundingClientRect().top,
        })""", lambda s: s["loaded"] and s["cycle"] == "2", "cycle 2 on the page")
    assert seen["fares"] == "0"  # this cycle's fares, not every cycle's
    assert seen["all"] == str(status["fares"])
    assert not seen["hidden"]
    assert seen["top"] < seen["lineTop"] < seen["bottom"]  # in the cycle panel
    changed = seen["changed"]
    assert "plan changed since cycle 2 started" in changed
    assert "finishes with the 110 jobs it holds" in changed
    assert "next cycle follows plan test-b (220 jobs)" in changed
    assert "To keep the old plan, restore its file and restart the master." in changed


def test_dead_letters_are_one_line_high_with_the_error_in_a_tooltip(hundred):
    _, first = http_call(hundred.port, "GET", "/api/jobs?state=failed&limit=10&offset=0")
    errors = {job["job_id"]: job["error"] for job in first["jobs"]}
    with hundred.browser.page(TIMEOUT) as page:
        for width in (1280, 700):  # at 700 px the error column is too narrow for the error
            open_dashboard(page, hundred.url, width)
            seen = page_reads(page, DEAD, lambda s: s["loaded"] and s["rows"],
                              f"the dead letters at {width} px")
            assert [row["job"] for row in seen["rows"]] == list(errors)
            for row in seen["rows"]:
                assert row["title"] == row["error"] == errors[row["job"]]
                assert (row["wrap"], row["overflow"]) == ("nowrap", "ellipsis")
                assert row["height"] < 2 * seen["lineHeight"], (width, row)
            if width == 700:
                assert all(row["cut"] for row in seen["rows"]), seen["rows"]


def test_dead_letters_are_paged(hundred):
    pages = [http_call(hundred.port, "GET", f"/api/jobs?state=failed&limit=10&offset={offset}")
             for offset in range(0, 100, 10)]
    assert {status for status, _ in pages} == {200}
    listed = [[job["job_id"] for job in page["jobs"]] for _, page in pages]
    everything = http_call(hundred.port, "GET", "/api/jobs?state=failed&limit=1000")[1]
    assert sum(listed, []) == [job["job_id"] for job in everything["jobs"]]
    assert everything["total"] == 100 and len(set(sum(listed, []))) == 100

    click = """(() => {{ document.getElementById({}).click(); return true; }})()"""
    with hundred.browser.page(TIMEOUT) as page:
        open_dashboard(page, hundred.url)
        seen = page_reads(page, DEAD, lambda s: s["loaded"] and s["rows"], "the first page")
        assert seen["range"] == "1–10 of 100" and seen["count"] == "100"
        assert [row["job"] for row in seen["rows"]] == listed[0]
        assert (seen["previous"], seen["next"]) == (False, True)
        for number in range(1, 10):
            page.evaluate(click.format('"dead-next"'), time.monotonic() + TIMEOUT)
            seen = page_reads(page, DEAD, lambda s, n=number: s["range"] ==
                              f"{10 * n + 1}–{10 * n + 10} of 100", f"page {number + 1}")
            assert [row["job"] for row in seen["rows"]] == listed[number]
        assert (seen["previous"], seen["next"]) == (True, False)
        page.evaluate(click.format('"dead-previous"'), time.monotonic() + TIMEOUT)
        seen = page_reads(page, DEAD, lambda s: s["range"] == "81–90 of 100", "page 9 again")
        assert [row["job"] for row in seen["rows"]] == listed[8]
        time.sleep(2.5)  # a refresh keeps the page the user is on
        seen = read(page, DEAD)
        assert seen["range"] == "81–90 of 100"
        assert [row["job"] for row in seen["rows"]] == listed[8]


def test_every_panel_is_within_two_screens_with_a_hundred_dead_letters(hundred, tmp_path):
    with hundred.browser.page(TIMEOUT) as page:
        open_dashboard(page, hundred.url)  # 1280 x 800: two screens are 1600 px
        page_reads(page, """JSON.stringify({
          loaded: document.body.dataset.loaded === "true",
          dead: document.querySelectorAll("#dead-letters tbody tr").length,
          audit: document.getElementById("audit-ok").textContent,
          routes: document.getElementById("route").options.length,
        })""", lambda s: s["loaded"] and s["dead"] >= 10 and s["audit"] != "–" and s["routes"],
                   "the dashboard with its dead letters")
        placed = read(page, PANELS)
        shot = page.call("Page.captureScreenshot", {"format": "png",
                                                    "captureBeyondViewport": True},
                         time.monotonic() + TIMEOUT)
    png = Path(os.environ.get("VOE_DASHBOARD_SCREENSHOT", tmp_path / "dashboard-100-dead.png"))
    png.write_bytes(base64.b64decode(shot["data"]))
    assert len(placed["panels"]) == 9
    late = [(name, top) for name, top, _ in placed["panels"] if top >= 1600]
    assert not late, placed
    assert placed["height"] <= 1600, placed
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_throughput_window_is_the_one_the_readme_names(hundred):
    with hundred.browser.page(TIMEOUT) as page:
        open_dashboard(page, hundred.url)
        seen = page_reads(page, """JSON.stringify({
          loaded: document.body.dataset.loaded === "true",
          window: (document.getElementById("throughput-window") || {}).textContent,
          label: document.getElementById("throughput").getAttribute("aria-label"),
        })""", lambda s: s["loaded"], "the throughput panel")
    connection = http.client.HTTPConnection("127.0.0.1", hundred.port, timeout=20)
    try:
        connection.request("GET", "/static/dashboard.js")
        script = connection.getresponse().read().decode()
    finally:
        connection.close()
    seconds = int(re.search(r"const WINDOW_S = (\d+);", script).group(1))
    words = {300: "five minutes", 600: "ten minutes"}
    assert seen["window"] == words[seconds]
    assert seen["label"].endswith(f"over the last {words[seconds]}")
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Dashboard and control API", 1)[1].split("\n## ", 1)[0]
    said = re.findall(r"throughput over the last (\w+ minutes)", " ".join(section.split()))
    assert said == [words[seconds]]


def test_a_workers_jobs_per_second_is_its_current_rate(tmp_path):
    airline = Airline(tmp_path, latency_ms=300)  # 60 jobs, two at a time: about 10 s
    cluster = Cluster(tmp_path, airline.url, plan=DAILY_PLAN.replace(
        "days_ahead = 1", "days_ahead = 10"))
    url = f"http://127.0.0.1:{cluster.env['VOE_HTTP_PORT']}/"
    browser = Browser(pages=1)
    rate = """JSON.stringify({
      loaded: document.body.dataset.loaded === "true",
      rates: [...document.querySelectorAll("#workers tbody tr")].map((row) => row.cells[8]
        .textContent),
    })"""
    try:
        cluster.sink()
        cluster.spawn("master", "master", "--plan", str(cluster.plan_path))
        wait_for(lambda: cluster.status()["cycle"], 30, "cycle 1")
        with browser.page(TIMEOUT) as page:
            open_dashboard(page, url)
            page_reads(page, rate, lambda s: s["loaded"], "the dashboard")
            cluster.worker("w1", concurrency=2)
            first = page_reads(page, rate, lambda s: s["rates"], "the worker on the page")
            assert first["rates"] == [""]  # one refresh: no rate yet
            running = page_reads(page, rate, lambda s: s["rates"][0] not in ("", "0.0"),
                                 "a rate from the second refresh on")
            assert float(running["rates"][0]) > 0
            assert cluster.jobs()["done"] < 60  # while the worker was still busy
            wait_for(lambda: cluster.jobs()["done"] == 60, 60, "the cycle to end")
            # Idle now: jobs/s is the rate of the last seconds, not the average since the
            # page first saw the worker (which stayed up to 30 s).
            started = time.monotonic()
            page_reads(page, rate, lambda s: s["rates"] == ["0.0"], "an idle worker's 0.0")
            assert time.monotonic() - started < 10
    finally:
        browser.stop()
        cluster.stop()
        airline.stop()


def test_a_job_waiting_to_retry_shows_when_it_is_due(tmp_path):
    broken = Airline(tmp_path, fail_routes=("GRU-REC",))  # 503: GRU-REC fails, REC-GRU not
    cluster = Cluster(tmp_path, broken.url, max_attempts=1, days=1, airports='["GRU", "REC"]')
    url = f"http://127.0.0.1:{cluster.env['VOE_HTTP_PORT']}/"
    browser = Browser(pages=1)
    retries = """JSON.stringify({
      loaded: document.body.dataset.loaded === "true",
      pending: document.getElementById("jobs-pending").textContent,
      line: document.getElementById("retry-line").textContent,
      lineHidden: document.getElementById("retry-line").hidden,
      rows: [...document.querySelectorAll("#retries tbody tr")].map((row) =>
        [...row.cells].map((cell) => cell.textContent)),
      tableHidden: document.getElementById("retries").hidden,
      alerts: [...document.querySelectorAll("#alerts p")].map((line) => line.textContent),
    })"""
    try:
        cluster.sink()
        first = cluster.master()
        cluster.worker("w1")
        assert cluster.wait_master(first) == 0  # 1 done, 1 failed
        cluster.stop()
        [failed] = [row["id"] for row in cluster.ledger_rows() if row["state"] == "failed"]
        # Sent back, tried again and failed again: its retry is due in ten minutes.
        ledger = Ledger(cluster.data_dir / "ledger.db")
        try:
            assert ledger.retry_failed(1, failed) == 1
            now = time.time()
            with ledger.transaction():
                ledger.mark_leased([(now + 20, "w1", 1, 1, failed)])
                ledger.mark_pending([("503 from the airline", now + 600, 1, failed)])
        finally:
            ledger.close()
        cluster.master()  # resumes cycle 1; no worker, so nothing is leased
        with browser.page(TIMEOUT) as page:
            open_dashboard(page, url)
            seen = page_reads(page, retries, lambda s: s["loaded"] and not s["lineHidden"],
                              "the job waiting to retry")
        assert seen["pending"] == "1"
        assert re.fullmatch(r"1 pending job waiting to retry, the next in (9|10) min",
                            seen["line"]), seen["line"]
        assert not seen["tableHidden"]
        [(job, attempt, state, error)] = seen["rows"]
        assert (job, attempt, error) == (failed, "1", "503 from the airline")
        assert re.fullmatch(r"waiting to retry \(in (9|10) min\)", state), state
        assert seen["alerts"] == []  # a master runs and no lease is overdue: nothing is stuck
        assert status_of(cluster)["waiting_to_retry"] == 1
    finally:
        browser.stop()
        cluster.stop()
        broken.stop()


def test_a_silent_sink_and_the_unstored_results_show_until_it_stores(tmp_path):
    airline = Airline(tmp_path, latency_ms=300)
    # 36 jobs of 300 ms, one at a time: a cycle that outlasts the freeze below.
    plan = SMALL_PLAN.replace('cycle = "once"', 'cycle = "1d"').format(
        max_attempts=2, lease_seconds=60, days=6, backend="demo",
        airports='["GRU", "REC", "SSA"]')
    cluster = Cluster(tmp_path, airline.url, plan=plan)
    cluster.env["VOE_MAX_UNSTORED"] = "2"
    url = f"http://127.0.0.1:{cluster.env['VOE_HTTP_PORT']}/"
    browser = Browser(pages=1)
    shown_sink = """JSON.stringify({
      loaded: document.body.dataset.loaded === "true",
      alerts: [...document.querySelectorAll("#alerts p")].map((line) => line.textContent),
      unstored: document.getElementById("sink-unstored").textContent,
      unstoredHidden: document.getElementById("sink-unstored").hidden,
      heard: document.getElementById("sink-heard").textContent,
      done: Number(document.getElementById("jobs-done").textContent),
    })"""
    sink = None
    try:
        sink = cluster.sink()
        cluster.spawn("master", "master", "--plan", str(cluster.plan_path))
        cluster.worker("w1", concurrency=1)
        with browser.page(TIMEOUT) as page:
            open_dashboard(page, url)
            storing = page_reads(page, shown_sink, lambda s: s["loaded"] and s["done"] >= 1,
                                 "a result stored")
            assert not storing["unstoredHidden"] and re.fullmatch(r"\d of 2", storing["unstored"])
            os.kill(sink.pid, signal.SIGSTOP)  # frozen: connected, silent, storing nothing
            frozen = page_reads(page, shown_sink,
                                lambda s: s["alerts"] and "answered for" in s["alerts"][0],
                                "the sink silent for more than ten seconds")
            assert re.fullmatch(r"The sink has not answered for 1\d s; leasing has stopped at 2 "
                                r"unstored results", frozen["alerts"][0]), frozen["alerts"]
            assert re.fullmatch(r"\d of 2 \(leasing stopped\)", frozen["unstored"]), frozen
            assert re.fullmatch(r"1\d s ago", frozen["heard"]), frozen["heard"]
            assert frozen["done"] < 36
            os.kill(sink.pid, signal.SIGCONT)
            stored = page_reads(page, shown_sink, lambda s: s["done"] == 36 and not s["alerts"],
                                "the sink storing every result, the line gone")
        assert stored["unstored"] == "0 of 2"
    finally:
        if sink is not None and sink.poll() is None:
            os.kill(sink.pid, signal.SIGCONT)
        browser.stop()
        cluster.stop()
        airline.stop()


def test_a_continuous_schedulers_measured_staleness_shows(tmp_path):
    airline = Airline(tmp_path)
    plan = DAILY_PLAN.replace('cycle = "1d"', 'scheduler = "freshness"').replace(
        'backend = "demo"', 'backend = "demo"\nrequests_per_second = 1')
    cluster = Cluster(tmp_path, airline.url, plan=plan)
    url = f"http://127.0.0.1:{cluster.env['VOE_HTTP_PORT']}/"
    browser = Browser(pages=1)
    ledger = Ledger(cluster.data_dir / "ledger.db")
    try:  # four audits: two of answers under an hour old (one changed), two 10 h old
        with ledger.transaction():
            ledger.add_observations([(1, 100.0, 1, False, 600.0, 1, "a"),
                                     (2, 101.0, 1, True, 1200.0, 1, "b"),
                                     (3, 102.0, 1, False, 36_000.0, 1, "c"),
                                     (4, 103.0, 1, False, 36_000.0, 1, "d")])
    finally:
        ledger.close()
    freshness = """JSON.stringify({
      loaded: document.body.dataset.loaded === "true",
      line: document.getElementById("freshness-line").textContent,
      hidden: document.getElementById("freshness-line").hidden,
    })"""
    try:
        cluster.spawn("master", "master", "--plan", str(cluster.plan_path))  # no worker
        with browser.page(TIMEOUT) as page:
            open_dashboard(page, url)
            seen = page_reads(page, freshness, lambda s: s["loaded"] and not s["hidden"],
                              "the measured staleness")
        assert seen["line"] == ("Freshness: 75.0% of 4 audits still correct; estimated stale "
                                "share of the store 25.0% (by age: under 1 h 50% of 2, "
                                "6-24 h 100% of 2)")
        assert status_of(cluster)["freshness"]["estimated_stale"] == 0.25
    finally:
        browser.stop()
        cluster.stop()
        airline.stop()
