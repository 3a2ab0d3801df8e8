"""Alembic environment: runs on the connection `registry.store.engine.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from vivified.registry.store import tables as models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through vivified.registry.store.engine.migrate()")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
