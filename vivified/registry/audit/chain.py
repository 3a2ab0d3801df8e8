"""The audit hash chain: each record's hash covers every column and the previous hash.

Editing a record breaks its hash; inserting or deleting one breaks the id sequence or the
`prev_hash` link of the next; cutting records off the end disagrees with the chain head.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.registry.store.tables import AuditChainHead, AuditRecord

GENESIS = "0" * 64
HASHED_COLUMNS = (
    "id",
    "time",
    "actor",
    "lane",
    "action",
    "target",
    "decision",
    "reason",
    "request_id",
    "status",
    "latency_ms",
    "bytes_in",
    "bytes_out",
    "detail",
    "prev_hash",
)
_PAGE = 5000
# One encoder, built once (json.dumps with options builds a new one per call).
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


_SCALARS = (str, int, float, bool, type(None))


def canonical_detail(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """`detail` as plain JSON values, so what is hashed is exactly what the database returns."""
    if not detail:
        return {}
    if all(type(k) is str and isinstance(v, _SCALARS) for k, v in detail.items()):
        return dict(detail)  # already plain JSON (the common case): skip the round trip
    loaded: dict[str, Any] = json.loads(json.dumps(dict(detail), default=str))
    return loaded


def record_hash(values: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of every hashed column (time to µs, latency to µs)."""
    body = [values[name] for name in HASHED_COLUMNS]  # fixed column order
    body[1] = round(float(body[1]), 6)  # time
    body[10] = round(float(body[10]), 3)  # latency_ms
    return body_hash(body)


def body_hash(body: Sequence[Any]) -> str:
    """`record_hash` of the hashed columns already in `HASHED_COLUMNS` order and rounded."""
    return hashlib.sha256(_ENCODE(body).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None


def _values(row: AuditRecord) -> dict[str, Any]:
    return {name: getattr(row, name) for name in HASHED_COLUMNS}


async def verify_chain(sessions: async_sessionmaker[AsyncSession]) -> ChainReport:
    """Walk the chain in id order up to the chain head read first (so records appended while
    we walk do not confuse us); the first inconsistency ends the walk."""
    async with sessions() as s:
        head = await s.get(AuditChainHead, 1)
    if head is None:
        return ChainReport(False, 0, None, "the chain head is missing")
    checked = 0
    prev_id = 0
    prev_hash = GENESIS
    async with sessions() as s:
        while prev_id < head.last_id:
            stmt = (
                select(AuditRecord)
                .where(col(AuditRecord.id) > prev_id, col(AuditRecord.id) <= head.last_id)
                .order_by(col(AuditRecord.id))
                .limit(_PAGE)
            )
            rows = (await s.execute(stmt)).scalars().all()
            if not rows:
                break
            for row in rows:
                if row.id != prev_id + 1:
                    return ChainReport(False, checked, row.id, f"record {prev_id + 1} is missing")
                if row.prev_hash != prev_hash:
                    return ChainReport(False, checked, row.id, "prev_hash does not link")
                if record_hash(_values(row)) != row.hash:
                    return ChainReport(False, checked, row.id, "record content was altered")
                prev_id, prev_hash = row.id, row.hash
                checked += 1
            s.expunge_all()
        if prev_id != head.last_id or prev_hash != head.last_hash:
            return ChainReport(False, checked, prev_id + 1, "the chain ends before its head")
        beyond = (
            await s.execute(select(AuditRecord.id).where(col(AuditRecord.id) > head.last_id))
        ).first()
        if beyond is not None:
            latest = await s.get(AuditChainHead, 1, populate_existing=True)
            if latest is None or latest.last_id < beyond[0]:
                return ChainReport(False, checked, beyond[0], "a record lies beyond the head")
    return ChainReport(True, checked)
