"""Soak: mixed load against a `vivified up` started on a temp data dir, for N minutes.

Drives the operator lane, the egress proxy, the event lane and admin changes (a grant made and
removed) at a paced rate, on loopback only, bounded in time and in count. Every minute it
prints the RSS of every process of `up` (up, gateway, egress, nats-server) and the counts so
far; at the end it compares the audit trail with the requests that were answered, and ends
with one verdict line:

  VERDICT: PASS|FAIL  memory growth after warm-up ≤ 10 %, 0 server errors, every record

Usage: scripts/soak [minutes] [--rate REQ_PER_S]   (default 10 minutes, 60 requests/s)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.manifests import simple
from support.procs import admin_headers
from support.up import UpProcess, rss_kib
from support.upstream import serve_in_thread

HOST = "soak-upstream.example.com"
WARM_UP = 60.0  # seconds: memory is compared with what it was at the end of the first minute
GROWTH_LIMIT = 0.10
KINDS = ("operator", "egress", "event", "admin")


class Upstream:
    """The plugins' side: items for the operator lane, a page for egress, a webhook."""

    def __init__(self) -> None:
        self.delivered: set[str] = set()

    async def item(self, request: Request) -> Response:
        return JSONResponse({"id": request.path_params["id"]})

    async def page(self, _request: Request) -> Response:
        return PlainTextResponse("hello")

    async def event(self, request: Request) -> Response:
        self.delivered.add(str((await request.json())["id"]))
        return JSONResponse({"ok": True})

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/items/{id}", self.item),
                Route("/health", self.health),
                Route("/events", self.event, methods=["POST"]),
                Route("/", self.page),
            ]
        )


class Stats:
    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()  # got an HTTP answer (so an audit record)
        self.server_errors: Counter[str] = Counter()  # 5xx or transport error
        self.other: Counter[str] = Counter()  # unexpected 4xx
        self.accepted_events: set[str] = set()
        self.examples: list[str] = []

    def note(self, kind: str, status: int | None, what: str = "") -> None:
        self.sent[kind] += 1
        if status is not None:
            self.answered[kind] += 1
        if status is None or status >= 500:
            self.server_errors[kind] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{kind}: {status} {what}")
        elif status >= 400:
            self.other[kind] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{kind}: {status} {what}")


async def register(c: httpx.AsyncClient, manifest: dict[str, Any]) -> str:
    r = await c.post("/admin/registration-tokens", json={"uses": 1}, headers=admin_headers())
    r.raise_for_status()
    r = await c.post(
        "/plugins/register",
        json=manifest,
        headers={"Authorization": f"Bearer {r.json()['token']}"},
    )
    if r.status_code != 201:
        raise RuntimeError(f"registering {manifest['id']}: {r.status_code} {r.text}")
    token: str = r.json()["token"]
    return token


async def setup(c: httpx.AsyncClient, upstream_url: str) -> dict[str, str]:
    port = int(upstream_url.rsplit(":", 1)[1])
    endpoints = {"health": "/health", "items": "/api/items/{id}"}
    tokens = {
        "caller": await register(c, simple("caller")),
        "target": await register(c, simple("target", base_url=upstream_url, endpoints=endpoints)),
        "publisher": await register(c, simple("publisher", events={"publishes": ["FileStored"]})),
        "subscriber": await register(
            c,
            simple(
                "subscriber",
                base_url=upstream_url,
                endpoints={"health": "/health", "events": "/events"},
                events={"subscribes": ["FileStored"]},
            ),
        ),
        "fetcher": await register(c, simple("fetcher")),
    }
    admin = admin_headers()
    for r in (
        await c.post("/admin/grants", json={"caller": "caller", "target": "target"}, headers=admin),
        await c.put(
            "/admin/plugins/fetcher/allowed-domains",
            json={"domains": [HOST], "mode": "enforce"},
            headers=admin,
        ),
        await c.put(
            "/admin/egress",
            json={
                "enabled": True,
                "blocked_domains": [],
                "allowed_networks": ["127.0.0.1/32"],
                "host_overrides": {HOST: "127.0.0.1"},
                "allowed_ports": [80, 443, port],
                "passthrough_domains": [],
                "response_filters": {},
            },
            headers=admin,
        ),
    ):
        if r.status_code not in (200, 201):
            raise RuntimeError(f"setup: {r.request.url}: {r.status_code} {r.text}")
    return tokens


class Load:
    def __init__(self, up: UpProcess, upstream_url: str, tokens: dict[str, str]) -> None:
        self.up = up
        self.upstream_port = int(upstream_url.rsplit(":", 1)[1])
        self.tokens = tokens
        self.stats = Stats()
        self.grant_id = ""

    async def one(self, gw: httpx.AsyncClient, proxy: httpx.AsyncClient, n: int) -> None:
        kind = KINDS[n % 3] if n % 50 else "admin"
        try:
            if kind == "operator":
                r = await gw.get(
                    f"/target/items/{n}",
                    headers={"Authorization": f"Bearer {self.tokens['caller']}"},
                )
            elif kind == "egress":
                r = await proxy.get(f"http://{HOST}:{self.upstream_port}/")
            elif kind == "event":
                r = await gw.post(
                    "/events",
                    json={"type": "FileStored", "data": {"file_id": f"f{n}", "size": n}},
                    headers={"Authorization": f"Bearer {self.tokens['publisher']}"},
                )
                if r.status_code == 202:
                    self.stats.accepted_events.add(r.json()["id"])
            else:
                r = await self.admin_change(gw)
        except httpx.HTTPError as exc:
            self.stats.note(kind, None, type(exc).__name__)
            return
        self.stats.note(kind, r.status_code, r.text[:120] if r.status_code >= 400 else "")

    async def admin_change(self, gw: httpx.AsyncClient) -> httpx.Response:
        """Make a grant, or remove the one made before: a config change every replica hears."""
        if self.grant_id:
            r = await gw.delete(f"/admin/grants/{self.grant_id}", headers=admin_headers())
            self.grant_id = ""
            return r
        r = await gw.post(
            "/admin/grants",
            json={"caller": "caller", "target": "subscriber"},
            headers=admin_headers(),
        )
        if r.status_code == 201:
            self.grant_id = r.json()["id"]
        return r

    async def run(self, seconds: float, rate: float, workers: int = 4) -> None:
        limit = int(seconds * rate * 1.2) + 10  # a count bound besides the time bound
        proxy_url = f"http://fetcher:{self.tokens['fetcher']}@127.0.0.1:{self.up.egress_port}"
        start = time.monotonic()
        counter = iter(range(limit))

        async def worker(gw: httpx.AsyncClient, proxy: httpx.AsyncClient) -> None:
            for n in counter:
                due = start + n / rate
                now = time.monotonic()
                if due - start > seconds:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                await self.one(gw, proxy, n)

        async with (
            httpx.AsyncClient(base_url=self.up.gateway_url, trust_env=False, timeout=30) as gw,
            httpx.AsyncClient(proxy=proxy_url, trust_env=False, timeout=30) as proxy,
        ):
            await asyncio.gather(*(worker(gw, proxy) for _ in range(workers)))


def audit_counts(db: Path) -> dict[str, int]:
    uri = f"file:{db}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:

        def one(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0])

        return {
            "operator": one(
                "SELECT count(*) FROM audit_records WHERE lane='operator' AND actor='caller'"
            ),
            "egress": one("SELECT count(*) FROM audit_records WHERE actor='fetcher'"),
            "event": one(
                "SELECT count(*) FROM audit_records WHERE lane='events' AND action='publish' "
                "AND actor='publisher'"
            ),
            "admin": one("SELECT count(*) FROM audit_records WHERE lane='admin'"),
        }


def now_s(started: float) -> float:
    return time.monotonic() - started


def rss_line(up: UpProcess, elapsed: float, stats: Stats) -> tuple[str, int]:
    pids = up.pids()
    rss = {name: rss_kib(pid) for name, pid in pids.items()}
    total = sum(rss.values())
    parts = "  ".join(f"{name} {kib / 1024:6.1f} MiB" for name, kib in rss.items())
    sent = sum(stats.sent.values())
    errors = sum(stats.server_errors.values())
    line = (
        f"[{elapsed / 60:4.1f} min] RSS {parts}  total {total / 1024:6.1f} MiB | "
        f"requests {sent}, server errors {errors}, other 4xx {sum(stats.other.values())}"
    )
    return line, total


async def soak(minutes: float, rate: float) -> int:
    data = Path(tempfile.mkdtemp(prefix="vivified-soak-"))
    upstream = Upstream()
    up = UpProcess(data / "data")
    try:
        up.start()
        print(f"vivified up: gateway {up.gateway_url}, egress 127.0.0.1:{up.egress_port}")
        with serve_in_thread(upstream.app()) as upstream_url:
            async with httpx.AsyncClient(base_url=up.gateway_url, trust_env=False, timeout=30) as c:
                tokens = await setup(c, upstream_url)
            await asyncio.sleep(3)  # the egress proxy's snapshot picks up the allowlist
            db = data / "data" / "registry.db"
            before = audit_counts(db)
            load = Load(up, upstream_url, tokens)
            seconds = minutes * 60
            started = time.monotonic()
            task = asyncio.create_task(load.run(seconds, rate))
            samples: list[tuple[float, int]] = []
            next_report = started + min(60.0, seconds)
            while not task.done():
                await asyncio.wait({task}, timeout=max(0.0, next_report - time.monotonic()))
                last = samples[-1][0] if samples else -60.0
                if time.monotonic() >= next_report or (task.done() and now_s(started) - last > 5):
                    line, total = rss_line(up, time.monotonic() - started, load.stats)
                    samples.append((time.monotonic() - started, total))
                    print(line, flush=True)
                    next_report += 60.0
            task.result()
            stats = load.stats
            deadline = time.monotonic() + 30
            # the webhook runs in another thread: poll its set, bounded
            while time.monotonic() < deadline:
                if stats.accepted_events <= upstream.delivered:
                    break
                await asyncio.sleep(0.2)
            expected = {k: stats.answered[k] for k in KINDS}
            counts: dict[str, int] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the writers commit a moment after answering
                now = audit_counts(db)
                counts = {k: now[k] - before[k] for k in KINDS}
                if all(counts[k] >= expected[k] for k in KINDS):
                    break
                await asyncio.sleep(0.5)
            return verdict(stats, expected, counts, samples, upstream.delivered)
    finally:
        rc = up.stop()
        print(f"vivified up stopped (exit {rc}); data dir {data} removed")
        shutil.rmtree(data, ignore_errors=True)


def verdict(
    stats: Stats,
    expected: dict[str, int],
    counts: dict[str, int],
    samples: list[tuple[float, int]],
    delivered: set[str],
) -> int:
    print("\nrequests by kind: " + ", ".join(f"{k} {stats.sent[k]}" for k in KINDS))
    print(
        "audit records vs answered requests: "
        + ", ".join(f"{k} {counts.get(k, 0)}/{expected[k]}" for k in KINDS)
    )
    undelivered = len(stats.accepted_events - delivered)
    print(f"events accepted {len(stats.accepted_events)}, not delivered {undelivered}")
    for example in stats.examples:
        print(f"  e.g. {example}")
    warm = [total for at, total in samples if at >= WARM_UP - 1]
    growth = (warm[-1] - warm[0]) / warm[0] if len(warm) >= 2 and warm[0] else 0.0
    errors = sum(stats.server_errors.values())
    unexpected = sum(stats.other.values())
    recorded = all(counts.get(k, 0) == expected[k] for k in KINDS)
    ok = growth <= GROWTH_LIMIT and errors == 0 and unexpected == 0 and recorded
    ok = ok and undelivered == 0 and len(warm) >= 2
    print(
        f"VERDICT: {'PASS' if ok else 'FAIL'}  memory growth after warm-up "
        f"{growth * 100:+.1f} % (limit {GROWTH_LIMIT * 100:.0f} %"
        f"{'' if len(warm) >= 2 else '; run at least 2 minutes to measure it'}), "
        f"server errors {errors}, other 4xx {unexpected}, "
        f"audit {'every record' if recorded else 'MISSING records'}, "
        f"events undelivered {undelivered}"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("minutes", nargs="?", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second, all kinds")
    args = parser.parse_args()
    if not 0 < args.minutes <= 24 * 60 or not 0 < args.rate <= 2000:
        parser.error("minutes must be in (0, 1440], rate in (0, 2000]")
    return asyncio.run(soak(args.minutes, args.rate))


if __name__ == "__main__":
    raise SystemExit(main())
