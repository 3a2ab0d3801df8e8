"""Reading the audit trail: filters, newest first, keyset paging with an opaque cursor."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.registry.store.tables import AuditRecord

MAX_LIMIT = 1000
DECISIONS = frozenset({"allow", "deny", "report"})
# Every lane that writes records (`AuditEvent.lane`): the values a `lane` filter may take.
LANES = frozenset({"admin", "egress", "events", "health", "operator", "registry"})
# Records are appended in time order per writer, but writers (replicas, queued batches, a
# retried batch) interleave: a record's time may trail an earlier record's by up to this many
# seconds. A time filter becomes an id range through the time index, widened by this margin;
# the exact time predicates stay, so the range only tells the database where to look.
TIME_SKEW = 600.0


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        version, _, raw = text.partition(":")
        value = int(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("invalid cursor") from exc
    if version != "v1" or value < 1:
        raise ValueError("invalid cursor")
    return value


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def record_json(row: AuditRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "time": iso_time(row.time),
        "actor": row.actor,
        "lane": row.lane,
        "action": row.action,
        "target": row.target,
        "decision": row.decision,
        "reason": row.reason,
        "request_id": row.request_id,
        "status": row.status,
        "latency_ms": row.latency_ms,
        "bytes_in": row.bytes_in,
        "bytes_out": row.bytes_out,
        "detail": row.detail,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


async def _id_range(
    s: AsyncSession, since: float | None, until: float | None
) -> tuple[int | None, int | None]:
    """Ids bounding the records of [since, until) (exclusive; None: no bound), found with two
    probes of the time index instead of a walk back from the newest record. A record appended
    after record R is at most TIME_SKEW older than R: so nothing before a record older than
    `since - TIME_SKEW`, nor after one newer than `until + TIME_SKEW`, can be in the window."""
    lo = hi = None
    time_col, id_col = col(AuditRecord.time), col(AuditRecord.id)
    if since is not None:
        older = select(id_col).where(time_col < since - TIME_SKEW)
        lo = (await s.execute(older.order_by(time_col.desc()).limit(1))).scalar()
    if until is not None:
        newer = select(id_col).where(time_col >= until + TIME_SKEW)
        hi = (await s.execute(newer.order_by(time_col).limit(1))).scalar()
    return lo, hi


async def query_audit(
    sessions: async_sessionmaker[AsyncSession],
    *,
    actor: str | None = None,
    target: str | None = None,
    lane: str | None = None,
    action: str | None = None,
    decision: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Matching records newest first, and the cursor of the next page (None at the end).
    Raises ValueError for a bad cursor, limit or decision."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    if decision is not None and decision not in DECISIONS:
        raise ValueError("decision must be allow, deny or report")
    stmt = select(AuditRecord)
    for column, value in (
        (AuditRecord.actor, actor),
        (AuditRecord.target, target),
        (AuditRecord.lane, lane),
        (AuditRecord.action, action),
        (AuditRecord.decision, decision),
    ):
        if value is not None:
            stmt = stmt.where(col(column) == value)
    if since is not None:
        stmt = stmt.where(col(AuditRecord.time) >= since)
    if until is not None:
        stmt = stmt.where(col(AuditRecord.time) < until)
    if cursor is not None:
        stmt = stmt.where(col(AuditRecord.id) < decode_cursor(cursor))
    stmt = stmt.order_by(col(AuditRecord.id).desc()).limit(limit + 1)
    async with sessions() as s:
        lo, hi = await _id_range(s, since, until)
        if lo is not None:
            stmt = stmt.where(col(AuditRecord.id) > lo)
        if hi is not None:
            stmt = stmt.where(col(AuditRecord.id) < hi)
        rows = list((await s.execute(stmt)).scalars().all())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].id) if more and rows else None
    return [record_json(r) for r in rows], next_cursor
