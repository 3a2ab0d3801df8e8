"""Registry backends for the processes a test starts: SQLite (the default) or PostgreSQL.

`BACKENDS` parametrises a fixture (module-scoped ones too) over both; `registry_url()` gives
that fixture its database: None for SQLite (the process keeps its default file in its data
directory, exactly as before), or a fresh, uniquely named PostgreSQL database created on the
server named by VIVIFIED_TEST_DATABASE_URL and dropped (connections forced off) afterwards.
Without that variable the PostgreSQL variant is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_ENV = "VIVIFIED_TEST_DATABASE_URL"

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _server_url() -> str:
    url = os.environ.get(PG_ENV, "")
    if not url:
        pytest.skip(f"{PG_ENV} is not set")
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _admin_exec(server: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def registry_url(backend: str) -> Iterator[str | None]:
    """None for `sqlite`; for `postgres` the URL of a database of its own, dropped after."""
    if backend == "sqlite":
        yield None
        return
    if backend != "postgres":
        raise ValueError(f"unknown backend {backend!r}")
    server = _server_url()
    name = f"vivified_test_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin_exec(server, f'CREATE DATABASE "{name}"'))
    try:
        parts = urlsplit(server)
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    finally:
        asyncio.run(_admin_exec(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def registry_env(url: str | None) -> dict[str, str]:
    """The process environment naming `url` (nothing for the SQLite default)."""
    return {} if url is None else {"VIVIFIED_DATABASE_URL": url}


def async_url(url: str) -> str:
    """The SQLAlchemy async URL of a registry URL (postgresql:// or sqlite:///)."""
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    return url
