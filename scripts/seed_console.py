"""Fill a registry with many plugins and audit records, fast, for console benchmarks.

    scripts/seed-console [--plugins 1000] [--audit 1000000] [--data-dir DIR | --database-url URL]
                         [--verify]

Plugins get valid manifests (checked by the real validator) in every status, health state and
risk level; active ones declare `docs` and get a cached documentation page. Audit records are
appended to the chain after its current head with the real hash (`body_hash` of the chain
code), so `GET /admin/audit/verify` still passes; they are written in bulk (multi-row INSERTs
on SQLite, COPY on PostgreSQL), not through the audit writer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vivified.gateway.docs_render import RENDERER, render_markdown
from vivified.gateway.plugin_docs import wanted
from vivified.registry.audit.chain import HASHED_COLUMNS, body_hash, verify_chain
from vivified.registry.manifest.diff import risk_rating
from vivified.registry.manifest.validator import validate_manifest
from vivified.registry.store.engine import create_engine, migrate, session_factory
from vivified.registry.store.snapshot import plugin_view
from vivified.registry.store.tables import Plugin

COLUMNS = (*HASHED_COLUMNS, "hash")
CHUNK = 20_000  # audit rows per transaction
SQLITE_ROWS = 256  # rows per multi-row INSERT (16 columns: under SQLite's parameter limit)
LANES = ("operator", "operator", "operator", "events", "egress", "registry", "admin")
ACTIONS = {
    "operator": ("GET", "POST", "PUT", "DELETE"),
    "events": ("publish", "deliver"),
    "egress": ("CONNECT", "GET"),
    "registry": ("register", "enable", "disable", "token"),
    "admin": ("config.update", "grant.create", "audit.verify"),
}
DENY_REASONS = ("no_grant", "missing_trait", "domain_not_allowed", "rate_limited", "disabled")
DOC = """# {name}

{name} is a seeded plugin for console benchmarks.

## Purpose

It serves items and publishes nothing.

## Setup

1. Register it with a registration token.
2. Ask an admin to approve it.

## Endpoints

| path | what |
|---|---|
| `GET /health` | health |
| `GET /api/items/{{id}}` | one item |
"""


def manifest(n: int) -> dict[str, Any]:
    pid = f"seed-{n:05d}"
    kind = n % 10
    traits = ["audit_required"]
    classes = ["internal"]
    compliance: dict[str, Any] = {"hipaa_controls": [], "audit_level": "basic"}
    domains: list[str] = []
    if kind in {1, 2}:
        traits = ["handles_pii", "audit_required"]
        classes = ["pii", "internal"]
    elif kind == 3:
        traits = ["handles_phi", "audit_required"]
        classes = ["phi", "internal"]
        compliance = {
            "hipaa_controls": ["164.312(a)"],
            "audit_level": "detailed",
            "data_retention_days": 2190,
        }
    elif kind == 4:
        traits = ["external_service", "audit_required"]
        domains = [f"api{n}.example.com"]
    return {
        "id": pid,
        "name": f"Seeded plugin {n}",
        "version": f"1.{n % 7}.{n % 13}",
        "description": f"Seeded plugin number {n} for console benchmarks",
        "docs": "/docs.md",
        "contracts": [f"Seed{n}Plugin"],
        "traits": traits,
        "dependencies": [f"seed-{n - 1:05d}"] if n % 5 == 0 and n > 0 else [],
        "allowed_domains": domains,
        "endpoints": {"health": "/health", "items": "/api/items/{id}"},
        "security": {"authentication_required": True, "data_classification": classes},
        "compliance": compliance,
        "base_url": f"http://127.0.0.1:9/seed/{n}",
    }


def plugin_rows(count: int, now: float) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        result = validate_manifest(manifest(n))
        assert result.manifest is not None, result.errors
        m = result.manifest
        status = ("active",) * 7 + ("registered",) * 2 + ("disabled",)
        risk = risk_rating(m)
        rows.append(
            {
                "id": m["id"],
                "name": m["name"],
                "version": m["version"],
                "manifest": m,
                "status": status[n % 10],
                "gen": 1,
                "owner": "seed",
                "base_url": m["base_url"],
                "base_url_override": None,
                "risk": risk.level,
                "risk_score": risk.score,
                "pending": None,
                "egress_domains": m["allowed_domains"],
                "egress_mode": "enforce",
                "egress_version": 0,
                "health_state": ("healthy", "healthy", "degraded", "unhealthy", "unknown")[n % 5],
                "health_checked_at": now,
                "health_failures": n % 3,
                "health_detail": {},
                "created_at": now - count + n,
                "updated_at": now,
            }
        )
    return rows


def doc_rows(plugins: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """A cached page for each active plugin, with the fingerprint the gateway computes (so it
    does not fetch them again)."""
    out = []
    for p in plugins:
        view = plugin_view(Plugin(**p))
        want = wanted(view)
        if want is None:
            continue
        source = DOC.format(name=p["name"])
        page = render_markdown(source)
        out.append(
            {
                "plugin_id": p["id"],
                "fingerprint": want.fingerprint,
                "source": want.url,
                "state": "ok",
                "error": "",
                "markdown": source,
                "html": page.html,
                "toc": json.dumps(page.toc),
                "renderer": RENDERER,
                "size": len(source),
                "fetched_at": now,
            }
        )
    return out


def audit_bodies(
    start_id: int, prev: str, count: int, actors: list[str], t0: float, t1: float
) -> Iterator[tuple[Any, ...]]:
    """Chained rows after (`start_id`, `prev`): hashed exactly as the audit writer hashes."""
    rnd = random.Random(start_id)
    span = (t1 - t0) / max(count, 1)
    encode = json.JSONEncoder(separators=(",", ":")).encode
    for i in range(count):
        rid = start_id + i + 1
        lane = rnd.choice(LANES)
        roll = rnd.random()
        decision = "allow" if roll < 0.9 else ("deny" if roll < 0.98 else "report")
        reason = "ok" if decision == "allow" else rnd.choice(DENY_REASONS)
        actor = rnd.choice(actors)
        target = rnd.choice(actors)
        detail = {"path": f"/api/items/{rid % 997}", "method": "GET"}
        body: list[Any] = [
            rid,
            round(t0 + i * span, 6),
            actor,
            lane,
            rnd.choice(ACTIONS[lane]),
            target,
            decision,
            reason,
            f"req-{rid:x}",
            200 if decision == "allow" else 403,
            round(rnd.uniform(0.2, 40.0), 3),
            rnd.randint(0, 4096),
            rnd.randint(0, 65536),
            detail,
            prev,
        ]
        prev = body_hash(body)
        body[13] = encode(detail)
        body.append(prev)
        yield tuple(body)


async def _insert_sqlite(
    conn: AsyncConnection, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    marks = "(" + ", ".join("?" for _ in cols) + ")"
    for start in range(0, len(rows), SQLITE_ROWS):
        chunk = rows[start : start + SQLITE_ROWS]
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES " + ", ".join(marks for _ in chunk)  # noqa: S608
        await conn.exec_driver_sql(sql, tuple(v for row in chunk for v in row))


async def _insert_pg(
    conn: AsyncConnection, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table(table, records=rows, columns=list(cols))


async def insert(
    conn: AsyncConnection,
    table: str,
    rows: list[dict[str, Any]] | list[tuple[Any, ...]],
    cols: tuple[str, ...],
) -> None:
    tuples = [tuple(r[c] for c in cols) if isinstance(r, dict) else r for r in rows]
    if conn.dialect.name == "postgresql":
        await _insert_pg(conn, table, cols, tuples)
    else:
        await _insert_sqlite(conn, table, cols, tuples)


_MOVE_HEAD = text("UPDATE audit_chain_head SET last_id = :i, last_hash = :h WHERE id = 1")


def _audit_sqlite(
    path: str, rows: Iterator[tuple[Any, ...]], count: int, say: Any, started: float
) -> int:
    """SQLite straight through the stdlib driver (no thread hop per statement): one
    `executemany` per chunk, the chain head moved in the same transaction."""
    insert_sql = (
        f"INSERT INTO audit_records ({', '.join(COLUMNS)}) "  # noqa: S608 - fixed names
        f"VALUES ({', '.join('?' for _ in COLUMNS)})"
    )
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    last_id = 0
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-262144")  # 256 MiB of page cache while seeding
        done = 0
        while done < count:
            batch = [next(rows) for _ in range(min(CHUNK, count - done))]
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert_sql, batch)
            last_id, last_hash = batch[-1][0], batch[-1][-1]
            db.execute(
                "UPDATE audit_chain_head SET last_id = ?, last_hash = ? WHERE id = 1",
                (last_id, last_hash),
            )
            db.execute("COMMIT")
            done += len(batch)
            if done % 200_000 == 0:
                say(f"  audit: {done:,} records, {done / (time.perf_counter() - started):,.0f}/s")
    finally:
        db.close()
    return int(last_id)


async def seed(
    engine: AsyncEngine, plugins: int, audit: int, *, quiet: bool = False
) -> dict[str, Any]:
    """Seed `plugins` plugins (ids seed-00000...) and append `audit` records to the chain."""
    await migrate(engine)
    now = time.time()
    say = (lambda *_a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    stats: dict[str, Any] = {}
    started = time.perf_counter()
    prows = plugin_rows(plugins, now)
    docs = doc_rows(prows, now)
    pcols = tuple(prows[0]) if prows else ()
    async with engine.begin() as conn:
        if prows:
            json_names = ("manifest", "pending", "egress_domains", "health_detail")
            stored = [
                {**r, **{n: (None if r[n] is None else json.dumps(r[n])) for n in json_names}}
                for r in prows
            ]
            await insert(conn, "plugins", stored, pcols)
        if docs:
            await insert(conn, "plugin_docs", docs, tuple(docs[0]))
    stats["plugins_s"] = round(time.perf_counter() - started, 2)
    say(f"plugins: {plugins} (+{len(docs)} docs pages) in {stats['plugins_s']} s")
    actors = [r["id"] for r in prows] + ["admin:bootstrap", "anonymous"]
    started = time.perf_counter()
    async with engine.begin() as conn:
        head = (
            await conn.execute(text("SELECT last_id, last_hash FROM audit_chain_head WHERE id = 1"))
        ).first()
        if head is None:
            raise SystemExit("the audit chain head row is missing")
        last_id, last_hash = int(head[0]), str(head[1])
    rows_iter = audit_bodies(last_id, last_hash, audit, actors, now - 30 * 86400, now - 60)
    if engine.dialect.name == "sqlite" and audit:
        path = str(engine.url.database)
        last_id = await asyncio.to_thread(_audit_sqlite, path, rows_iter, audit, say, started)
    else:
        done = 0
        while done < audit:
            batch = [next(rows_iter) for _ in range(min(CHUNK, audit - done))]
            async with engine.begin() as conn:
                await insert(conn, "audit_records", batch, COLUMNS)
                last_id, last_hash = batch[-1][0], batch[-1][-1]
                await conn.execute(_MOVE_HEAD, {"i": last_id, "h": last_hash})
            done += len(batch)
            if done % 200_000 == 0:
                say(f"  audit: {done:,} records, {done / (time.perf_counter() - started):,.0f}/s")
    stats["audit_s"] = round(time.perf_counter() - started, 2)
    stats["audit_rate"] = round(audit / stats["audit_s"]) if audit and stats["audit_s"] else 0
    stats["last_id"] = last_id
    say(f"audit: {audit:,} records in {stats['audit_s']} s ({stats['audit_rate']:,}/s)")
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
    return stats


async def verify(engine: AsyncEngine) -> dict[str, Any]:
    started = time.perf_counter()
    report = await verify_chain(session_factory(engine))
    seconds = round(time.perf_counter() - started, 2)
    return {
        "ok": report.ok,
        "checked": report.checked,
        "problem": report.problem,
        "verify_s": seconds,
    }


def database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        url: str = args.database_url
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url
    return f"sqlite+aiosqlite:///{Path(args.data_dir).resolve() / 'registry.db'}"


async def amain(args: argparse.Namespace) -> int:
    engine = create_engine(database_url(args))
    try:
        stats = await seed(engine, args.plugins, args.audit)
        if args.verify:
            stats |= await verify(engine)
            print(
                f"chain: ok={stats['ok']} checked={stats['checked']:,} in {stats['verify_s']} s",
                file=sys.stderr,
            )
        print(json.dumps(stats))
        return 0 if stats.get("ok", True) else 1
    finally:
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugins", type=int, default=1000)
    parser.add_argument("--audit", type=int, default=1_000_000)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="SQLite registry.db in this data dir")
    where.add_argument("--database-url", help="postgresql://user@host/db (or sqlite:///path)")
    parser.add_argument("--verify", action="store_true", help="verify the audit chain after")
    args = parser.parse_args()
    if args.plugins < 0 or args.audit < 0 or args.plugins > 99_999:
        parser.error("--plugins is 0-99999 and --audit at least 0")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
