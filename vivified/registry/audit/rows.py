"""An audit batch as database rows: numbered and hashed on the chain, and the statements that
store them (multi-row INSERTs on SQLite, `executemany` elsewhere).

On SQLite (aiosqlite) the batch's statements go to the driver's thread in two calls
(`sqlite_thread`: `lock_head`, then `store_rows`); elsewhere one by one.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from vivified.registry.audit.chain import HASHED_COLUMNS, body_hash, canonical_detail

if TYPE_CHECKING:
    from vivified.registry.audit.writer import AuditEvent

COLUMNS = (*HASHED_COLUMNS, "hash")
_DETAIL = COLUMNS.index("detail")
_json = json.JSONEncoder(separators=(",", ":")).encode


# SQLite takes a batch as multi-row INSERTs of up to this many rows. Its `executemany` steps
# one row at a time and hands the GIL back and forth with the event loop at every row
# (measured with the gateway on one core: about one thread switch per operator-lane call, and
# twice the writer thread's CPU). 16 columns x 256 rows stays under SQLite's limit of 32,766
# parameters per statement (999 before 3.32).
ROWS_PER_INSERT = 256 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999 // len(COLUMNS)


@functools.cache
def insert_sql(paramstyle: str, rows: int = 1) -> str:
    """The INSERT for `rows` rows (more than one only for SQLite's qmark style)."""
    if paramstyle == "qmark":
        marks = ", ".join("?" for _ in COLUMNS)
    elif paramstyle == "numeric_dollar":
        marks = ", ".join(f"${i}" for i in range(1, len(COLUMNS) + 1))
    elif paramstyle == "format":
        marks = ", ".join("%s" for _ in COLUMNS)
    else:
        raise RuntimeError(f"unsupported DB-API paramstyle {paramstyle!r}")
    values = ", ".join(f"({marks})" for _ in range(rows))
    # Fixed identifiers and placeholders only: no value is interpolated.
    return f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES {values}"  # noqa: S608


def multi_row_inserts(params: list[tuple[Any, ...]]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """SQLite's INSERTs for `params`: (statement, flattened values) of up to ROWS_PER_INSERT
    rows each."""
    for start in range(0, len(params), ROWS_PER_INSERT):
        chunk = params[start : start + ROWS_PER_INSERT]
        yield insert_sql("qmark", len(chunk)), tuple(value for row in chunk for value in row)


async def insert_rows(conn: AsyncConnection, params: list[tuple[Any, ...]]) -> None:
    """Insert the rows: multi-row statements on SQLite, `executemany` elsewhere (asyncpg
    pipelines it; the others have no per-row thread hand-off)."""
    style = conn.dialect.paramstyle
    if style != "qmark":
        await conn.exec_driver_sql(insert_sql(style), params)
        return
    for statement, values in multi_row_inserts(params):
        await conn.exec_driver_sql(statement, values)


LOCK_HEAD_SQL = "UPDATE audit_chain_head SET last_id = last_id WHERE id = 1"
READ_HEAD_SQL = "SELECT last_id, last_hash FROM audit_chain_head WHERE id = 1"
LOCK_HEAD = text(LOCK_HEAD_SQL)
READ_HEAD = text(READ_HEAD_SQL)
MOVE_HEAD = text(
    "UPDATE audit_chain_head SET last_id = :last_id, last_hash = :last_hash WHERE id = 1"
)
MOVE_HEAD_QMARK = "UPDATE audit_chain_head SET last_id = ?, last_hash = ? WHERE id = 1"
NO_HEAD = "the audit chain head row is missing (run migrations)"


def chain_rows(
    events: Sequence[AuditEvent], last_id: int, last_hash: str, params: list[tuple[Any, ...]]
) -> tuple[int, str]:
    """Number and hash `events` after the chain's (`last_id`, `last_hash`), appending each
    row's values to `params`; returns the new last id and hash."""
    for event in events:
        last_id += 1
        detail = canonical_detail(event.detail)
        # The hashed columns in HASHED_COLUMNS order: hashed as they are, stored with
        # `detail` as JSON text and the hash after them (one tuple per row, no dict).
        body = [
            last_id,
            round(float(event.time or time.time()), 6),
            event.actor,
            event.lane,
            event.action,
            event.target,
            event.decision,
            event.reason,
            event.request_id,
            int(event.status),
            round(float(event.latency_ms), 3),
            int(event.bytes_in),
            int(event.bytes_out),
            detail,
            last_hash,
        ]
        last_hash = body_hash(body)
        body[_DETAIL] = _json(detail)
        body.append(last_hash)
        params.append(tuple(body))
    return last_id, last_hash


# aiosqlite runs every call of a connection in that connection's own thread, one hand-off
# (a queue put, a thread wake-up, a loop wake-up) per call; statement by statement through
# SQLAlchemy a batch took 15 of them, 2.4-3.1 ms of CPU whatever its size (~45 us per record in
# batches of 50, what a proxy at ~1,000 req/s writes every 50 ms). On SQLite the writer
# instead locks and reads the head in one call in that thread (`lock_head`), numbers and hashes
# the rows on the event loop as before (yielding to requests), and stores them and moves the
# head in a second call (`store_rows`), on the connection SQLAlchemy checked out inside the
# session's transaction (committed by it as before). `_execute` and `_conn` are aiosqlite's
# own (pinned to 0.22); without them the batch goes statement by statement, as on PostgreSQL.
InThread = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]


async def sqlite_thread(conn: AsyncConnection) -> InThread | None:
    """Run-in-the-driver's-thread for an aiosqlite connection, else None."""
    if conn.dialect.paramstyle != "qmark":
        return None
    aio = (await conn.get_raw_connection()).driver_connection
    run = getattr(aio, "_execute", None)
    db = getattr(aio, "_conn", None)
    if run is None or not isinstance(db, sqlite3.Connection):
        return None

    async def in_thread(fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await run(fn, db)

    return in_thread


def lock_head(db: sqlite3.Connection) -> tuple[int, str] | None:
    """Take the write lock (the UPDATE) and read the chain head, in SQLite's thread."""
    cur = db.cursor()
    try:
        cur.execute(LOCK_HEAD_SQL)
        head = cur.execute(READ_HEAD_SQL).fetchone()
        return None if head is None else (head[0], head[1])
    finally:
        cur.close()


def store_rows(
    params: list[tuple[Any, ...]], last_id: int, last_hash: str, db: sqlite3.Connection
) -> None:
    """Insert the rows in multi-row statements and move the head, in SQLite's thread."""
    cur = db.cursor()
    try:
        for statement, values in multi_row_inserts(params):
            cur.execute(statement, values)
        cur.execute(MOVE_HEAD_QMARK, (last_id, last_hash))
    finally:
        cur.close()
