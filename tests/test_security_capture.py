"""A loopback capture of a CURVE run holds no job or fare field in clear text."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest

from tests.cluster import Airline, Cluster, assert_stored_exactly_once, wait_for


def test_loopback_capture_holds_no_job_or_fare_in_clear_text(tmp_path):
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump is not installed (.ci/run installs it)")
    airline = Airline(tmp_path)
    cluster = Cluster(tmp_path, airline.url)
    ports = [cluster.env[name] for name in ("VOE_JOBS_PORT", "VOE_CONTROL_PORT",
                                            "VOE_RESULTS_PORT")]
    pcap = tmp_path / "lo.pcap"
    log = tmp_path / "tcpdump.err"
    with open(log, "wb") as errors:
        capture = subprocess.Popen(
            [tcpdump, "-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0", "-w", str(pcap),
             " or ".join(f"tcp port {port}" for port in ports)],
            stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while "listening on" not in log.read_text(errors="replace"):
            if capture.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"tcpdump cannot capture on lo: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        cluster.sink()
        master = cluster.master()
        cluster.worker("w1")
        assert cluster.wait_master(master) == 0
        assert_stored_exactly_once(cluster, airline)
    finally:
        cluster.stop()
        airline.stop()
        if capture.poll() is None:
            time.sleep(0.5)  # let tcpdump write what the kernel already handed it
            capture.send_signal(signal.SIGTERM)
            capture.wait(10)
    wait_for(lambda: pcap.exists() and pcap.stat().st_size > 0, 5, "the capture file")
    captured = pcap.read_bytes()
    assert len(captured) > 10_000, "the capture holds almost nothing; it proves nothing"
    fields = set()
    for job in cluster.ledger_rows():
        fields.update({job["id"], job["date"]})
    for fare in cluster.store_rows("fares"):
        fields.update({fare["flight"], fare["price"]})
    leaked = sorted(field for field in fields if str(field).encode() in captured)
    assert not leaked, f"in clear text on the wire: {leaked[:10]}"
