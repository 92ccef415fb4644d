"""The master's dashboard (issue 8) in headless Chromium during a real run: the counts it
shows are `voe status --json`'s (workers with their address and errors, the events outbox),
its Retry button re-queues a dead letter, its outbox button re-sends webhook dead letters,
and a screenshot."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import time

import pytest

from tests.cluster import SMALL_PLAN, Airline, Cluster, wait_for
from tests.test_publish import SECRET, Receiver
from voe.backends.browser import Browser, Page

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
  cycle: document.getElementById("cycle-number").textContent,
  workers: [...document.querySelectorAll("#workers tbody tr")].map((row) => row.dataset.worker),
  addresses: [...document.querySelectorAll("#workers tbody tr")].map(
    (row) => row.cells[1].textContent),
  errors: [...document.querySelectorAll("#workers tbody tr")].map(
    (row) => Number(row.cells[7].textContent)),
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
            page.evaluate("(() => { const route = document.getElementById('route');"
                          " route.value = 'GRU-SSA'; route.dispatchEvent(new Event('change'));"
                          " return route.value; })()", deadline)
            plotted = page_shows(page, lambda s: s["prices"] > 0, "GRU-SSA's price history")
            assert plotted["prices"] == 1  # one departure date, one cycle
            assert seen["fares"] == status["fares"] > 0
            assert seen["cycle"] == str(status["cycle"]["number"])
            assert seen["workers"] == [worker["worker"]]
            assert seen["addresses"] == [worker["address"]]
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
