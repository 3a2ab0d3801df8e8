"""The audit quarantine: where a record the store refused is kept, outside the chain.

A record the store refuses for its values (see `bounds.is_data_error`) cannot enter the
chain as it is. The writer stores it here instead, as ASCII-only JSON text (a NUL becomes
the six characters `\\u0000`, a lone surrogate `\\ud800`: every backend takes that), and
appends a stand-in to the chain whose `detail.quarantine_id` names this row — in the same
transaction, so either both are stored or neither. The chain stays whole and verifiable;
what the record said is not lost; an operator sees the count in `/readyz` and an ERROR in
the log (lane, action, decision, request id and the row id: never the record's values).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from vivified.registry.audit.writer import AuditEvent

MAX_PAYLOAD = 64 * 1024  # characters of the quarantined record's JSON text
_COLUMNS = ("time", "quarantined_at", "lane", "action", "decision", "request_id", "refused")
_INSERT = text(
    "INSERT INTO audit_quarantine"
    " (time, quarantined_at, lane, action, decision, request_id, refused, record)"
    " VALUES (:time, :quarantined_at, :lane, :action, :decision, :request_id, :refused, :record)"
    " RETURNING id"
)
COUNT = text("SELECT count(*) FROM audit_quarantine")


@dataclasses.dataclass(frozen=True)
class Quarantined:
    """What the writer stores for a refused record: `safe` is the stand-in event (safe ASCII,
    for the columns and the log), `record` the original as ASCII JSON."""

    safe: AuditEvent
    refused: str
    record: str


def payload(event: AuditEvent) -> str:
    """The refused event as ASCII-only JSON text, at most `MAX_PAYLOAD` characters."""
    values = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    out = json.dumps(values, ensure_ascii=True, default=repr, separators=(",", ":"))
    if len(out) > MAX_PAYLOAD:  # still ASCII; no longer JSON, and says so
        out = out[: MAX_PAYLOAD - 12] + "...truncated"
    return out


async def insert(conn: AsyncConnection, q: Quarantined) -> int:
    """Store `q` in the transaction of `conn`; returns its row id."""
    e = q.safe
    values: dict[str, Any] = {name: getattr(e, name, None) for name in _COLUMNS}
    values.update(
        time=float(e.time or time.time()),
        quarantined_at=time.time(),
        refused=q.refused,
        record=q.record,
    )
    return int((await conn.execute(_INSERT, values)).scalar_one())


async def count(conn: AsyncConnection) -> int:
    """How many records are quarantined (shown by `/readyz`)."""
    return int((await conn.execute(COUNT)).scalar_one())
