"""Shared fixtures: a hermetic environment and a fresh registry on SQLite and PostgreSQL.

PostgreSQL runs when `VIVIFIED_TEST_DATABASE_URL` points at a server (CI sets it when one
answers); each test gets its own database, created and dropped around it, so runs never
see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vivified.registry.store.engine import create_engine, migrate, session_factory

PG_ENV = "VIVIFIED_TEST_DATABASE_URL"
_PG_URL = os.environ.get(PG_ENV, "")


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No VIVIFIED_* setting or proxy of the developer's shell leaks into a test."""
    for key in list(os.environ):
        upper = key.upper()
        if (upper.startswith("VIVIFIED_") and upper != PG_ENV) or upper in {
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "NO_PROXY",
        }:
            monkeypatch.delenv(key, raising=False)


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _admin_exec(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_PG_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database URL (skipped without a server)."""
    if not _PG_URL:
        pytest.skip(f"{PG_ENV} is not set")
    import asyncio

    name = f"vivified_test_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin_exec(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_db(_PG_URL, name)
    finally:
        asyncio.run(_admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The registry URL for a test: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.db"
    pg: str = request.getfixturevalue("pg_database")
    return pg


def sqlalchemy_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    return url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(sqlalchemy_url(db_url))
    await migrate(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)
