"""Console pages stay bounded as the registry grows: the same number of SQL statements with 5
or 50 plugins (no N+1), no statement that reads every plugin row, keyset paging of the plugins
table, and the audit indexes the filters need. In-process gateway (its own engine, so a
SQLAlchemy event listener sees every statement), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from support.procs import ADMIN_TOKEN

from vivified.config.settings import load_settings
from vivified.gateway.app import create_app
from vivified.gateway.console import plugins as console_plugins
from vivified.gateway.core import Core
from vivified.registry.audit.query import query_audit
from vivified.registry.store.engine import create_engine, session_factory

SEED = Path(__file__).resolve().parents[2] / "scripts" / "seed_console.py"
AUDIT = 300  # seeded audit records: every page has something to show
PAGES = (
    "/console/",
    "/console/plugins",
    "/console/plugins?sort=risk&order=desc",
    "/console/plugins?status=active&trait=handles_pii",
    "/console/plugins?classification=phi&sort=name",
    "/console/plugins/seed-00001",
    "/console/plugins/seed-00001/disable",
    "/console/audit",
    "/console/audit?actor=seed-00001",
    "/console/audit?lane=admin&decision=report",
    "/console/audit?since=2020-01-01T00:00Z&until=2100-01-01T00:00Z",
)
LIST_PAGES = PAGES[:5]


def _seed_module() -> Any:
    spec = importlib.util.spec_from_file_location("seed_console", SEED)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _async_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")


async def _add_plugins(url: str, first: int, count: int) -> None:
    """Plugins seed-<first>.. seed-<first+count-1> (seed-console's manifests and rows)."""
    seed = _seed_module()
    engine = create_engine(_async_url(url))
    try:
        if first == 0:
            await seed.seed(engine, count, AUDIT, quiet=True)
            return
        rows = seed.plugin_rows(first + count, time.time())[first:]
        json_names = ("manifest", "pending", "egress_domains", "health_detail")
        stored = [
            {**r, **{n: None if r[n] is None else seed.json.dumps(r[n]) for n in json_names}}
            for r in rows
        ]
        async with engine.begin() as conn:
            await seed.insert(conn, "plugins", stored, tuple(stored[0]))
    finally:
        await engine.dispose()


@asynccontextmanager
async def console(url: str, tmp: Path) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncEngine]]:
    """A signed-in client of an in-process gateway on `url`, and the gateway's engine."""
    environ = {
        "VIVIFIED_DATA_DIR": str(tmp),
        "VIVIFIED_ADMIN_TOKEN": ADMIN_TOKEN,
        "VIVIFIED_HEALTH_INTERVAL": "3600",
    }
    if url.startswith("postgresql"):
        environ["VIVIFIED_DATABASE_URL"] = url
    else:
        environ["VIVIFIED_DATA_DIR"] = str(Path(url.removeprefix("sqlite:///")).parent)
    settings = load_settings(environ=environ)
    core = await Core.start(settings)
    try:
        app = create_app(settings, core)
        app.state.core = core  # what the lifespan does (ASGITransport runs no lifespan)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            r = await c.post("/console/login", data={"token": ADMIN_TOKEN})
            assert r.status_code == 303, r.text
            yield c, core.engine
    finally:
        await core.stop()


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine runs for this task inside the block (the in-process app
    serves a request in the client's task; core's background workers run in their own)."""
    seen: list[str] = []
    task = asyncio.current_task()

    def count(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        try:
            mine = asyncio.current_task() is task
        except RuntimeError:  # a thread without an event loop: not the request
            mine = False
        if mine:
            seen.append(sql)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def page_statements(c: httpx.AsyncClient, engine: AsyncEngine) -> dict[str, list[str]]:
    out = {}
    for path in PAGES:
        with statements(engine) as seen:
            r = await c.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        out[path] = list(seen)
    return out


def reads_every_plugin(sql: str) -> bool:
    """A SELECT of plugin rows without a bound: no LIMIT, no aggregate, no single id."""
    flat = " ".join(sql.split()).lower()
    if not re.search(r"\bfrom plugins\b", flat) or not flat.startswith("select"):
        return False
    bounded = (" limit " in flat, "count(" in flat, "plugins.id = " in flat)
    return not any(bounded)


async def test_console_pages_issue_as_many_queries_with_50_plugins_as_with_5(
    db_url: str, tmp_path: Path
) -> None:
    await _add_plugins(db_url, 0, 5)
    async with console(db_url, tmp_path / "a") as (c, engine):
        few = await page_statements(c, engine)
    await _add_plugins(db_url, 5, 45)
    async with console(db_url, tmp_path / "b") as (c, engine):
        many = await page_statements(c, engine)
    assert {p: len(s) for p, s in many.items()} == {p: len(s) for p, s in few.items()}
    for path in LIST_PAGES:
        unbounded = [s for s in many[path] if reads_every_plugin(s)]
        assert unbounded == [], path


@pytest.mark.parametrize(
    ("query", "key"),
    [
        pytest.param("sort=id", lambda r: r[0], id="id-ascending"),
        pytest.param("sort=id&order=desc", lambda r: r[0], id="id-descending"),
        pytest.param("sort=risk&order=desc", lambda r: (r[1], r[0]), id="risk-descending"),
        pytest.param("sort=name&status=active", lambda r: (r[2], r[0]), id="name-filtered"),
    ],
)
async def test_plugins_table_pages_with_a_keyset_cursor(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: str, key: Any
) -> None:
    await _add_plugins(db_url, 0, 50)
    monkeypatch.setattr(console_plugins, "PAGE_SIZE", 7)
    row = re.compile(
        r'<td><a href="/console/plugins/([^"]+)">.*?</td>\s*<td>([^<]*)</td>.*?'
        r'<span class="risk (\w+)">',
        re.S,
    )
    async with console(db_url, tmp_path / "gw") as (c, _engine):
        seen: list[tuple[str, str, str]] = []
        url = f"/console/plugins?{query}"
        for _ in range(20):
            r = await c.get(url)
            assert r.status_code == 200, r.text[:500]
            body = r.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
            got = [(pid, name, risk) for pid, name, risk in row.findall(body)]
            assert 1 <= len(got) <= 7
            seen += got
            more = re.search(r'href="(\?[^"]*after=[^"]*)" rel="next"', r.text)
            if more is None:
                break
            url = "/console/plugins" + more.group(1).replace("&amp;", "&")
    ids = [s[0] for s in seen]
    assert len(ids) == len(set(ids))  # no row twice across pages
    status = "active" if "status=active" in query else None
    expected = {
        f"seed-{n:05d}" for n in range(50) if status is None or n % 10 < 7
    }  # seed-console: statuses cycle 7 active, 2 registered, 1 disabled
    assert set(ids) == expected
    rank = {"low": 0, "medium": 1, "high": 2, "critical": 3}
    keyed = [(pid, rank[risk], name) for pid, name, risk in seen]
    ordered = sorted(keyed, key=key, reverse="order=desc" in query)
    assert [k[0] for k in keyed] == [k[0] for k in ordered]


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not-base64-json", id="garbage"),
        pytest.param("WzEsIDJd", id="id-not-a-string"),  # [1, 2]
        pytest.param("WyJhIiwgIi4uLyJd", id="bad-plugin-id"),  # ["a", "../"]
    ],
)
async def test_plugins_table_refuses_a_forged_cursor(
    db_url: str, tmp_path: Path, cursor: str
) -> None:
    await _add_plugins(db_url, 0, 5)
    async with console(db_url, tmp_path / "gw") as (c, _engine):
        r = await c.get(f"/console/plugins?after={cursor}")
    assert r.status_code == 400
    assert '<code class="reason">invalid_cursor</code>' in r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        pytest.param(100, 200, id="middle"),
        pytest.param(None, 299, id="until-the-newest"),
        pytest.param(290, 299, id="last-days"),
        pytest.param(299, None, id="since-the-newest"),
        pytest.param(0, 400, id="all"),
    ],
)
async def test_audit_time_range_finds_every_record_of_the_window(
    db_url: str, lo: int | None, hi: int | None
) -> None:
    """Seeded records are in time order (a day apart); three late ones appended after them
    with times up to 100 s older than the newest (another writer's queue) are found too."""
    await _add_plugins(db_url, 0, 1)
    engine = create_engine(_async_url(db_url))
    sessions = session_factory(engine)
    try:
        async with engine.begin() as conn:
            times = [t for (t,) in await conn.execute(text("SELECT time FROM audit_records"))]
            top = len(times)
            ordered = sorted(times)
            late = [ordered[-1] - 100, ordered[-1] - 5, ordered[-1] + 1]
            for n, t in enumerate(late, 1):
                await conn.execute(
                    text(
                        "INSERT INTO audit_records (id, time, actor, lane, action, target,"
                        " decision, reason, request_id, status, latency_ms, bytes_in, bytes_out,"
                        " detail, prev_hash, hash) VALUES (:i, :t, 'late', 'admin', 'x', 'y',"
                        " 'allow', 'ok', 'r', 200, 1.0, 0, 0, '{}', '', '')"
                    ),
                    {"i": 10_000 + n, "t": t},
                )
        since = None if lo is None else ordered[min(lo, top - 1)] - (lo >= top)
        until = None if hi is None else ordered[min(hi, top - 1)] + (hi >= top)
        everything, _ = await query_audit(sessions, limit=1000)
        got, _ = await query_audit(sessions, since=since, until=until, limit=1000)
    finally:
        await engine.dispose()

    def inside(t: float) -> bool:
        return (since is None or t >= since) and (until is None or t < until)

    expected = [r["id"] for r in everything if inside(_epoch(r["time"]))]
    assert [r["id"] for r in got] == expected
    assert expected


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_audit_filters_have_their_composite_indexes(db_url: str, tmp_path: Path) -> None:
    await _add_plugins(db_url, 0, 1)
    engine = create_engine(_async_url(db_url))
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(
                lambda sync: {
                    ix["name"]: list(ix["column_names"])
                    for ix in inspect(sync).get_indexes("audit_records")
                }
            )
    finally:
        await engine.dispose()
    assert found["ix_audit_records_actor_id"] == ["actor", "id"]
    assert found["ix_audit_records_target_id"] == ["target", "id"]
    assert found["ix_audit_records_lane_decision_id"] == ["lane", "decision", "id"]
    assert found["ix_audit_records_time"] == ["time"]
