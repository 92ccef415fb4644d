"""Benchmark `voe export`: peak memory of exporting millions of fares, SQLite and PostgreSQL.

Issue 16's target: `voe export` of 10 million fares stays under 150 MB RSS from either
store. Each store is created by voe (its schema and version), then filled with
``--fares`` (10,000,000) fares inside the database by one ``INSERT ... SELECT`` (a
recursive CTE in SQLite, ``generate_series`` in PostgreSQL), never through Python
objects: 60 fares per job (``demo:GRU-REC:2027-01-01``), 56 routes x 365 dates per
cycle, so 10 million fares span 9 cycles; prices are decimal strings in BRL.

The real CLI then runs as a child process, ``python -m voe export --out FILE``, with
the store named by ``VOE_STORE_URL``. Its RSS is sampled with psutil every 50 ms and
its peak taken from the kernel too (``ru_maxrss`` of the reaped child, ``os.wait4``),
with its wall and CPU time. The file must hold exactly ``--fares`` data lines (plus
the CSV header). PostgreSQL (127.0.0.1:5432, database ``test``) gets a fresh schema,
dropped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from measure import Quiet, RssSampler, measured
from procs import REPO, Proc, clean_env
from report import common_args, fmt, record, table, verdict, workdir

if TYPE_CHECKING:
    import psycopg

# The PostgreSQL server of the tests (loopback, trust auth).
POSTGRES_URL = os.environ.get("VOE_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
# Issue 16's ceiling on the export's peak RSS, in bytes (150 MB).
TARGET_BYTES = 150_000_000
# Fares per job, as the demo airline answers.
FARES_PER_JOB = 60
# Seconds the fill of one store may take (a server-side statement timeout for PostgreSQL).
FILL_TIMEOUT = 1800
# Bytes read at a time when counting the lines of the exported file.
READ_CHUNK = 1 << 20
MIB = 1024 * 1024

# Eight airports, three letters each: 8 x 7 routes.
_AIRPORTS = "GRUGIGRECSSAPOAFORBSBCWB"

# The columns of one fare from its number ``i`` (0-based), job ``j = i / 60`` and
# place in the job ``k = i % 60``: the same values in both dialects.
_SQLITE_FILL = f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :count),
f AS (SELECT i, i / {FARES_PER_JOB} AS j, i % {FARES_PER_JOB} AS k FROM n),
g AS (SELECT i, k, j / 20440 + 1 AS cycle,
             substr('{_AIRPORTS}', 3 * (j % 8) + 1, 3) AS origin,
             substr('{_AIRPORTS}', 3 * ((j % 8 + 1 + (j / 8) % 7) % 8) + 1, 3) AS destination,
             date('2027-01-01', '+' || ((j / 56) % 365) || ' days') AS day FROM f)
INSERT INTO fares (cycle, job_id, backend, origin, destination, date, return_date, flight,
                   departure, arrival, price, currency)
SELECT cycle, 'demo:' || origin || '-' || destination || ':' || day, 'demo', origin,
       destination, day, NULL, 'VO' || (1000 + k),
       day || 'T' || printf('%02d:%02d', 5 + k % 18, (k * 7) % 60),
       day || 'T' || printf('%02d:%02d', 7 + k % 18, (k * 7) % 60),
       printf('%d.%02d', 199 + (i * 7919) % 3800, (i * 31) % 100), 'BRL'
FROM g
"""

_POSTGRES_FILL = f"""
INSERT INTO fares (cycle, job_id, backend, origin, destination, date, return_date, flight,
                   departure, arrival, price, currency)
SELECT cycle, 'demo:' || origin || '-' || destination || ':' || day, 'demo', origin,
       destination, day, NULL, 'VO' || (1000 + k),
       day || 'T' || lpad((5 + k %% 18)::text, 2, '0') || ':'
           || lpad(((k * 7) %% 60)::text, 2, '0'),
       day || 'T' || lpad((7 + k %% 18)::text, 2, '0') || ':'
           || lpad(((k * 7) %% 60)::text, 2, '0'),
       (199 + (i * 7919) %% 3800)::text || '.' || lpad(((i * 31) %% 100)::text, 2, '0'), 'BRL'
FROM (SELECT i, k, (j / 20440 + 1)::int AS cycle,
             substr('{_AIRPORTS}', (3 * (j %% 8) + 1)::int, 3) AS origin,
             substr('{_AIRPORTS}', (3 * ((j %% 8 + 1 + (j / 8) %% 7) %% 8) + 1)::int, 3)
                 AS destination,
             to_char(date '2027-01-01' + ((j / 56) %% 365)::int, 'YYYY-MM-DD') AS day
      FROM (SELECT i, i / {FARES_PER_JOB} AS j, i %% {FARES_PER_JOB} AS k
            FROM generate_series(0::bigint, %(count)s - 1) AS i) AS f) AS g
"""


@dataclass
class Outcome:
    """One store's export: what it wrote, how long it took, how much memory it held."""

    store: str
    fares: int
    fill_seconds: float
    seconds: float
    cpu: float
    sampled_rss: int
    maxrss: int
    samples: int
    check: str
    quiet: str

    @property
    def peak(self) -> int:
        """The larger of the two peak RSS figures, the one judged against the target."""
        return max(self.sampled_rss, self.maxrss)


def fill_sqlite(path: Path, count: int) -> float:
    """Create voe's SQLite store at ``path`` and fill it with ``count`` fares; return seconds."""
    from voe.store import SqliteStore

    SqliteStore(path).close()
    started = time.monotonic()
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA synchronous = OFF")  # a throwaway store: no fsync while filling
        with db:
            db.execute(_SQLITE_FILL, {"count": count})
        stored = db.execute("SELECT count(*) FROM fares").fetchone()[0]
    finally:
        db.close()
    if stored != count:
        raise RuntimeError(f"the SQLite store holds {stored:,} fares, not {count:,}")
    return time.monotonic() - started


def fill_postgres(admin: psycopg.Connection, url: str, count: int) -> float:
    """Let voe migrate the schema of ``url``, fill it with ``count`` fares; return seconds."""
    from voe.store import open_store

    open_store(url).close()
    started = time.monotonic()
    admin.execute(_POSTGRES_FILL, {"count": count})
    admin.execute("ANALYZE fares")
    stored = admin.execute("SELECT count(*) FROM fares").fetchone()[0]
    if stored != count:
        raise RuntimeError(f"the PostgreSQL store holds {stored:,} fares, not {count:,}")
    return time.monotonic() - started


def count_lines(path: Path) -> int:
    """Newlines in ``path``, read a chunk at a time (the file may be gigabytes)."""
    lines = 0
    with open(path, "rb") as data:
        for chunk in iter(lambda: data.read(READ_CHUNK), b""):
            lines += chunk.count(b"\n")
    return lines


def run_export(store: str, target: str, tmp: Path, count: int, fmt_name: str,
               timeout: float, keep: bool) -> tuple[float, float, int, int, int, str]:
    """Run ``python -m voe export`` on ``target``; measure it and check its file.

    Returns wall seconds, CPU seconds, sampled peak RSS, the kernel's peak RSS,
    the number of samples, and the check passed.
    """
    out = tmp / f"{store}.{fmt_name}"
    out.unlink(missing_ok=True)
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    env = clean_env(VOE_STORE_URL=target, VOE_DATA_DIR=str(tmp), PYTHONPATH=pythonpath,
                    SQLITE_TMPDIR=str(tmp))  # SQLite's sort spills into the work dir
    argv = [sys.executable, "-m", "voe", "export", "--format", fmt_name, "--out", str(out)]
    started = time.monotonic()
    proc = Proc(f"export-{store}", argv, env, tmp, tmp / f"export-{store}.log")
    with RssSampler({"export": proc.pid}, interval=0.05, max_seconds=timeout) as sampler:
        try:
            code = proc.wait(timeout)
        finally:
            proc.stop()
    seconds = time.monotonic() - started
    if code != 0:
        raise RuntimeError(f"voe export from {store} exited {code}:\n{proc.log_tail()}")
    said = proc.log_path.read_text(encoding="utf-8", errors="replace")
    if f"exported {count} fares" not in said:
        raise RuntimeError(f"voe export from {store} did not report {count} fares:\n{said}")
    header = 1 if fmt_name == "csv" else 0
    lines = count_lines(out)
    if lines != count + header:
        raise RuntimeError(f"{out.name} has {lines:,} lines, expected {count + header:,}")
    check = (f"{out.name}: {count:,} data lines{' + header' if header else ''}, "
             f"{out.stat().st_size / MIB:,.0f} MiB; voe said `exported {count} fares`")
    if not keep:
        out.unlink()  # gigabytes at full size
    if proc.exit_cpu is None or proc.exit_maxrss is None:
        raise RuntimeError(f"voe export from {store} was reaped elsewhere: no rusage")
    return seconds, proc.exit_cpu, sampler.peak["export"], proc.exit_maxrss, sampler.samples, \
        check


def measure(store: str, target: str, tmp: Path, count: int, fill_seconds: float,
            args: argparse.Namespace, quiet: Quiet) -> Outcome:
    """Export one store once the machine is quiet (again if it was disturbed)."""
    print(f"exporting {count:,} fares from {store}...", flush=True)
    result, _background, said = measured(
        lambda _attempt: run_export(store, target, tmp, count, args.format, args.timeout,
                                    args.keep), quiet,
        attempts=args.attempts)
    seconds, cpu, sampled, maxrss, samples, check = result
    outcome = Outcome(store, count, fill_seconds, seconds, cpu, sampled, maxrss, samples, check,
                      said)
    print(f"  {seconds:.1f} s, peak RSS {outcome.peak / MIB:.1f} MiB", flush=True)
    return outcome


def bench_sqlite(tmp: Path, args: argparse.Namespace, quiet: Quiet) -> Outcome:
    """Build the SQLite store and export it."""
    path = tmp / "fares.db"
    print(f"filling SQLite with {args.fares:,} fares...", flush=True)
    fill = fill_sqlite(path, args.fares)
    print(f"  {fill:.1f} s, {path.stat().st_size / MIB:,.0f} MiB", flush=True)
    return measure("SQLite", f"sqlite:///{path}", tmp, args.fares, fill, args, quiet)


def bench_postgres(tmp: Path, args: argparse.Namespace, quiet: Quiet) -> Outcome:
    """Build a fresh PostgreSQL schema, export it, and drop the schema whatever happens."""
    import psycopg

    admin = psycopg.connect(args.postgres_url, autocommit=True, connect_timeout=5,
                            options=f"-c statement_timeout={FILL_TIMEOUT * 1000}")
    schema = f"voe_bench_{secrets.token_hex(6)}"
    try:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"SET search_path = {schema}")
        separator = "&" if "?" in args.postgres_url else "?"
        url = f"{args.postgres_url}{separator}options={quote(f'-csearch_path={schema}')}"
        print(f"filling PostgreSQL ({schema}) with {args.fares:,} fares...", flush=True)
        fill = fill_postgres(admin, url, args.fares)
        print(f"  {fill:.1f} s", flush=True)
        return measure("PostgreSQL", url, tmp, args.fares, fill, args, quiet)
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


def report(outcomes: list[Outcome], notes: list[str]) -> str:
    """The Markdown section of this run."""
    rows = [(o.store, f"{o.fares:,}", f"{o.fill_seconds:.1f}", f"{o.seconds:.1f}",
             fmt(o.fares / o.seconds), f"{o.cpu:.1f}", f"{o.sampled_rss / MIB:.1f}",
             f"{o.maxrss / MIB:.1f}") for o in outcomes]
    lines = [table(("store", "fares", "fill s", "export s", "fares/s", "export CPU s",
                    "peak RSS MiB (sampled)", "peak RSS MiB (ru_maxrss)"), rows), ""]
    lines += ["Checks:", ""] + [f"- {o.store}: {o.check}; {o.samples:,} RSS samples; "
                                f"machine: {o.quiet}" for o in outcomes]
    lines += ["", "Targets:", ""]
    lines += [f"- `voe export` of {o.fares:,} fares from {o.store} under 150 MB RSS: "
              f"{o.peak / 1e6:.1f} MB ({o.peak / MIB:.1f} MiB), {verdict(o.peak < TARGET_BYTES)}"
              for o in outcomes]
    lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines)


def main() -> int:
    """Run the benchmark and record it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fares", type=int, default=10_000_000,
                        help="fares in each store (10,000,000)")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv",
                        help="what voe export writes (csv)")
    parser.add_argument("--skip", action="append", default=[], choices=("sqlite", "postgres"),
                        help="leave a store out")
    parser.add_argument("--postgres-url", default=POSTGRES_URL,
                        help="the PostgreSQL server and database (a fresh schema is made in it)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds one export may take (1,800)")
    parser.add_argument("--attempts", type=int, default=2,
                        help="exports per store at most: one more when other processes "
                             "disturbed the first (2)")
    common_args(parser)
    args = parser.parse_args()
    if args.fares < 1 or args.attempts < 1:
        parser.error("--fares and --attempts must be at least 1")
    notes = ["Fill s: building the store inside the database (one INSERT ... SELECT), not "
             "measured against the target.",
             "Export s: from starting `python -m voe export` to its exit (interpreter start "
             "and imports included); CPU s is the child's user + system time (`os.wait4`).",
             "Peak RSS: sampled from /proc/PID/statm every 50 ms, and the kernel's high-water "
             "mark (`ru_maxrss`) of the reaped child; the larger is judged. The PostgreSQL "
             "server's own memory (its sort of the ORDER BY) is not the export's and is not "
             "counted; SQLite sorts inside the export process, so its sort is.",
             f"Data: {FARES_PER_JOB} fares per job, 56 routes x 365 dates per cycle, prices "
             "decimal strings in BRL, no return dates."]
    outcomes: list[Outcome] = []
    quiet = Quiet(args.quiet_wait)
    with workdir("export", args.keep) as tmp:
        if "sqlite" not in args.skip:
            outcomes.append(bench_sqlite(tmp, args, quiet))
        if "postgres" not in args.skip:
            outcomes.append(bench_postgres(tmp, args, quiet))
    record(f"export: `voe export` of {args.fares:,} fares ({args.format}) from "
           f"{' and '.join(o.store for o in outcomes) or 'no store'}",
           report(outcomes, notes), args.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
