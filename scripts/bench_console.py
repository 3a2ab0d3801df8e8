"""Bench: every console page's time on a seeded registry (1,000 plugins, 1,000,000 audit
records by default), on SQLite and on PostgreSQL. Never part of the test suite.

    scripts/bench console                      (defaults, both backends)
    scripts/bench_console.py [--plugins N] [--audit N] [--requests N] [--backend sqlite|postgres]

A real gateway process serves the seeded registry; a signed-in httpx client on loopback times
N GETs of each page (after warm-ups) and reports p50/p95 of two times: the client's wall time
of the whole exchange, and the server time, which the gateway's own access log measures for
each request (`latency_ms` of `vivified.access`, matched by the response's request id): the
time from the request's arrival to the last byte of the response, without the client's share
of a loaded machine. The target (100 ms p95) applies to the server time. `--runs N` measures
N times on the same seed. `--data-dir DIR` / `--database-url URL` time an already seeded
registry (scripts/seed-console) instead of seeding a fresh one.
PostgreSQL: a uniquely named database on BENCH_PG_URL (default the machine's
postgresql://postgres@127.0.0.1:5432/test server), dropped after the run.
Environment overrides for `scripts/bench`: BENCH_CONSOLE_PLUGINS, BENCH_CONSOLE_AUDIT,
BENCH_CONSOLE_REQUESTS, BENCH_CONSOLE_RUNS, BENCH_CONSOLE_BACKENDS (comma-separated).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from seed_console import seed  # noqa: E402
from support.procfs import cpu_seconds  # noqa: E402
from support.procs import ADMIN_TOKEN, CoreProcess  # noqa: E402

from vivified.registry.audit.query import encode_cursor  # noqa: E402
from vivified.registry.store.engine import create_engine  # noqa: E402

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_MS = 100.0
WARMUP = 3


def pages(plugins: int, audit: int) -> list[str]:
    """The pages to time: every kind of console page, with the filters that hit the database
    differently (a sort, a filter, a rare value, a deep page)."""
    mid = f"seed-{plugins // 2:05d}" if plugins else "seed-00000"
    now = time.time()
    day = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(now - 15 * 86400))
    next_day = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(now - 14 * 86400))
    out = [
        "/console/",
        "/console/plugins",
        "/console/plugins?sort=risk&order=desc",
        "/console/plugins?status=active&trait=handles_pii",
        f"/console/plugins/{mid}",
        f"/console/plugins/{mid}/disable",
        f"/console/plugins/{mid}/docs",
        "/console/docs",
        "/console/tokens",
        "/console/audit",
        "/console/audit?decision=deny",
        "/console/audit?actor=seed-00042",
        "/console/audit?target=seed-00042&decision=deny",
        "/console/audit?action=audit.verify",
        "/console/audit?lane=admin&decision=report",
        f"/console/audit?since={day}&until={next_day}",
    ]
    if audit > 2:
        out.append(f"/console/audit?cursor={encode_cursor(audit // 2)}")
    return out


def nav_links(html: str) -> list[str]:
    """Every page the console's navigation offers (other engineers' pages included)."""
    nav = re.search(r'<nav aria-label="Console">(.*?)</nav>', html, re.S)
    return re.findall(r'href="(/console/[^"#?]*)"', nav.group(1)) if nav else []


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# path, status, client p50/p95, server p50/p95, gateway CPU per request
Row = tuple[str, int, float, float, float, float, float]


def cpu_ms(pid: int) -> float:
    """The process's user + system CPU time so far (ms): what a page costs on a quiet machine,
    which a loaded, shared one does not show in wall times."""
    return cpu_seconds(pid) * 1000


def server_times(log_path: Path) -> dict[str, float]:
    """request id → server time (ms), from the gateway's JSON access log."""
    out: dict[str, float] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if '"vivified.access"' not in line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if "request_id" in doc and "latency_ms" in doc:
            out[str(doc["request_id"])] = float(doc["latency_ms"])
    return out


def server_ms(log_path: Path, ids: list[str]) -> list[float]:
    """The server times of `ids`, waiting (bounded) for the log lines to be flushed."""
    deadline = time.monotonic() + 10
    while True:
        found = server_times(log_path)
        if all(i in found for i in ids) or time.monotonic() > deadline:
            return [found[i] for i in ids if i in found]
        time.sleep(0.1)


def measure(
    url: str, log_path: Path, pid: int, plugins: int, audit: int, requests: int
) -> list[Row]:
    with httpx.Client(base_url=url, trust_env=False, timeout=120) as c:
        r = c.post("/console/login", data={"token": ADMIN_TOKEN})
        if r.status_code != 303:
            sys.exit(f"sign-in failed: {r.status_code} {r.text[:200]}")
        overview = c.get("/console/").text
        todo = pages(plugins, audit)
        todo += [p for p in nav_links(overview) if p not in todo]
        rows = []
        for path in todo:
            status = 0
            for _ in range(WARMUP):
                status = c.get(path).status_code
            times = []
            ids = []
            cpu0 = cpu_ms(pid)
            for _ in range(requests):
                started = time.perf_counter()
                r = c.get(path)
                times.append((time.perf_counter() - started) * 1000)
                status = r.status_code
                ids.append(r.headers.get("x-vivified-request-id", ""))
            cpu = (cpu_ms(pid) - cpu0) / requests
            server = server_ms(log_path, ids) or [float("nan")]
            rows.append(
                (
                    path,
                    status,
                    statistics.median(times),
                    percentile(times, 0.95),
                    statistics.median(server),
                    percentile(server, 0.95),
                    cpu,
                )
            )
            print(
                f"  {path}: client {rows[-1][2]:.1f} / {rows[-1][3]:.1f} ms, "
                f"server {rows[-1][4]:.1f} / {rows[-1][5]:.1f} ms, cpu {cpu:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
        return rows


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _seed(url: str, plugins: int, audit: int) -> dict[str, object]:
    engine = create_engine(url)
    try:
        return await seed(engine, plugins, audit)
    finally:
        await engine.dispose()


def report(
    backend: str, plugins: int, audit: int, requests: int, run: int, rows: list[Row]
) -> None:
    print(
        f"\nconsole pages, {backend}, {plugins:,} plugins, {audit:,} audit records, "
        f"{requests} requests each, run {run} (ms; server = the gateway's access-log time):"
    )
    print(
        f"{'page':<64} {'status':>6} {'client p50':>10} {'p95':>7} {'server p50':>10} {'p95':>7}"
        f" {'cpu/req':>7}"
    )
    for path, status, p50, p95, s50, s95, cpu in rows:
        flag = "  OVER" if not s95 <= TARGET_MS or status != 200 else ""
        print(
            f"{path[:64]:<64} {status:>6} {p50:>10.1f} {p95:>7.1f} {s50:>10.1f} {s95:>7.1f}"
            f" {cpu:>7.1f}{flag}"
        )
    sys.stdout.flush()


def serve_and_measure(
    backend: str, tmp: Path, env: dict[str, str], plugins: int, audit: int, args: argparse.Namespace
) -> None:
    env = {
        **env,
        "VIVIFIED_HEALTH_INTERVAL": "3600",
        "VIVIFIED_LOG_LEVEL": "info",
        "VIVIFIED_ACCESS_LOG": "true",
    }
    gw = CoreProcess("gateway", tmp, env).start(timeout=600)
    try:
        for run in range(1, args.runs + 1):
            assert gw.proc is not None
            rows = measure(gw.url, gw.log_path, gw.proc.pid, plugins, audit, args.requests)
            report(backend, plugins, audit, args.requests, run, rows)
    finally:
        gw.stop()


def run_backend(backend: str, args: argparse.Namespace) -> None:
    plugins, audit = args.plugins, args.audit
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        env: dict[str, str] = {}
        db_name = ""
        if backend == "postgres":
            db_name = f"vivified_bench_console_{uuid.uuid4().hex[:12]}"
            asyncio.run(_pg_admin(f'CREATE DATABASE "{db_name}"'))
            plain = _with_db(PG_URL, db_name)
            env["VIVIFIED_DATABASE_URL"] = plain
            url = plain.replace("postgresql://", "postgresql+asyncpg://", 1)
        else:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'registry.db'}"
        try:
            print(
                f"== {backend}: seeding {plugins:,} plugins, {audit:,} audit records",
                file=sys.stderr,
            )
            stats = asyncio.run(_seed(url, plugins, audit))
            print(f"   seeded: {stats}", file=sys.stderr)
            serve_and_measure(backend, Path(tmp), env, plugins, audit, args)
        finally:
            if db_name:
                asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))


def run_existing(args: argparse.Namespace) -> None:
    """Time a registry seeded before (kept as it is; the gateway migrates it)."""
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        if args.database_url:
            env = {"VIVIFIED_DATABASE_URL": args.database_url}
            serve_and_measure("postgres", Path(tmp), env, args.plugins, args.audit, args)
        else:
            serve_and_measure("sqlite", Path(args.data_dir), {}, args.plugins, args.audit, args)


def main() -> None:
    parser = argparse.ArgumentParser(description="console page timings on a seeded registry")
    parser.add_argument(
        "--plugins", type=int, default=int(os.environ.get("BENCH_CONSOLE_PLUGINS", 1000))
    )
    parser.add_argument(
        "--audit", type=int, default=int(os.environ.get("BENCH_CONSOLE_AUDIT", 1_000_000))
    )
    parser.add_argument(
        "--requests", type=int, default=int(os.environ.get("BENCH_CONSOLE_REQUESTS", 30))
    )
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_CONSOLE_RUNS", 1)))
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", help="an already seeded SQLite data dir (no seeding)")
    where.add_argument("--database-url", help="an already seeded PostgreSQL database")
    parser.add_argument(
        "--backend",
        action="append",
        choices=("sqlite", "postgres"),
        help="repeat for both (default: both)",
    )
    args = parser.parse_args()
    backends = args.backend or os.environ.get("BENCH_CONSOLE_BACKENDS", "sqlite,postgres").split(
        ","
    )
    if args.data_dir or args.database_url:
        run_existing(args)
        return
    for backend in backends:
        run_backend(backend, args)


if __name__ == "__main__":
    main()
