"""The migrations build exactly the schema the models describe, and run twice safely."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from vivified.registry.store import tables as models  # noqa: F401  (registers the tables)
from vivified.registry.store.engine import create_engine, migrate


def _async_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")


async def test_migrations_match_models(db_url: str) -> None:
    """From an empty database (a SQLite file, or a fresh PostgreSQL database per test)."""
    engine = create_engine(_async_url(db_url))
    try:
        await migrate(engine)
        await migrate(engine)  # idempotent: every start runs it

        def diff(conn: Connection) -> list[object]:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, SQLModel.metadata))

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()
