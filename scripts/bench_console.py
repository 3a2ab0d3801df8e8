"""Bench: every console page's time on a seeded registry (1,000 plugins, 1,000,000 audit
records by default), on SQLite and on PostgreSQL. Never part of the test suite.

    scripts/bench console                      (defaults, both backends)
    scripts/bench_console.py [--plugins N] [--audit N] [--requests N] [--backend sqlite|postgres]

A real gateway process serves the seeded registry; a signed-in httpx client on loopback times
N GETs of each page (after warm-ups) and reports p50/p95. The time is the client's wall time
of the whole exchange, so it bounds the server time from above (loopback adds well under
1 ms). PostgreSQL: a uniquely named database on BENCH_PG_URL (default the machine's
postgresql://postgres@127.0.0.1:5432/test server), dropped after the run. Environment
overrides for `scripts/bench`: BENCH_CONSOLE_PLUGINS, BENCH_CONSOLE_AUDIT,
BENCH_CONSOLE_REQUESTS, BENCH_CONSOLE_BACKENDS (comma-separated).
"""

from __future__ import annotations

import argparse
import asyncio
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


def measure(
    url: str, plugins: int, audit: int, requests: int
) -> list[tuple[str, int, float, float]]:
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
            for _ in range(requests):
                started = time.perf_counter()
                status = c.get(path).status_code
                times.append((time.perf_counter() - started) * 1000)
            rows.append((path, status, statistics.median(times), percentile(times, 0.95)))
            print(
                f"  {path}: {rows[-1][2]:.1f} / {rows[-1][3]:.1f} ms", file=sys.stderr, flush=True
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


def run_backend(backend: str, plugins: int, audit: int, requests: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        env = {"VIVIFIED_HEALTH_INTERVAL": "3600", "VIVIFIED_LOG_LEVEL": "warning"}
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
            gw = CoreProcess("gateway", Path(tmp), env).start(timeout=300)
            try:
                rows = measure(gw.url, plugins, audit, requests)
            finally:
                gw.stop()
        finally:
            if db_name:
                asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    print(
        f"\nconsole pages, {backend}, {plugins:,} plugins, {audit:,} audit records, "
        f"{requests} requests each (ms, client wall time on loopback):"
    )
    print(f"{'page':<64} {'status':>6} {'p50':>8} {'p95':>8}")
    for path, status, p50, p95 in rows:
        flag = "  OVER" if p95 > TARGET_MS or status != 200 else ""
        print(f"{path[:64]:<64} {status:>6} {p50:>8.1f} {p95:>8.1f}{flag}")


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
    for backend in backends:
        run_backend(backend, args.plugins, args.audit, args.requests)


if __name__ == "__main__":
    main()
