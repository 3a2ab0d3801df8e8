"""Versioned config objects and their revisions: the egress document, per-plugin allowlists,
per-plugin rate/concurrency limits.

Every write is one transaction that checks the expected version (optimistic concurrency),
stores the new value and a revision row (who, when, before, after, why). A revert is a
write like any other, whose value is a revision's `before`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.policy.egress_settings import DEFAULT_EGRESS_DOCUMENT
from vivified.registry.store.tables import ConfigDocument, ConfigRevision, Plugin

EGRESS = "egress"
ALLOWLIST_PREFIX = "plugin:"
ALLOWLIST_SUFFIX = ":allowed-domains"
LIMITS_SUFFIX = ":limits"
DEFAULT_LIMITS: dict[str, Any] = {"rate": None, "concurrency": None}  # null: the settings'


class VersionConflict(Exception):
    def __init__(self, current: int) -> None:
        super().__init__(f"the object is at version {current}")
        self.current = current


class UnknownObject(LookupError):
    pass


@dataclass(frozen=True)
class Versioned:
    value: dict[str, Any]
    version: int


def allowlist_object(plugin_id: str) -> str:
    return f"{ALLOWLIST_PREFIX}{plugin_id}{ALLOWLIST_SUFFIX}"


def _plugin_of(obj: str) -> str | None:
    if obj.startswith(ALLOWLIST_PREFIX) and obj.endswith(ALLOWLIST_SUFFIX):
        return obj[len(ALLOWLIST_PREFIX) : -len(ALLOWLIST_SUFFIX)]
    return None


def limits_object(plugin_id: str) -> str:
    """The config document (and revision object) of a plugin's rate/concurrency override."""
    return f"{ALLOWLIST_PREFIX}{plugin_id}{LIMITS_SUFFIX}"


def _limits_plugin_of(obj: str) -> str | None:
    if obj.startswith(ALLOWLIST_PREFIX) and obj.endswith(LIMITS_SUFFIX):
        return obj[len(ALLOWLIST_PREFIX) : -len(LIMITS_SUFFIX)]
    return None


def _check(expected: int | None, current: int) -> None:
    if expected is not None and expected != current:
        raise VersionConflict(current)


async def get_egress(sessions: async_sessionmaker[AsyncSession]) -> Versioned:
    async with sessions() as s:
        row = await s.get(ConfigDocument, EGRESS)
    if row is None:
        return Versioned(copy.deepcopy(DEFAULT_EGRESS_DOCUMENT), 0)
    return Versioned(dict(row.document), row.version)


async def put_egress(
    sessions: async_sessionmaker[AsyncSession],
    document: dict[str, Any],
    *,
    expected: int | None,
    actor: str,
    comment: str = "",
) -> Versioned:
    """Replace the egress document whole (validate it first); returns the new version."""
    return await _put_document(
        sessions, EGRESS, DEFAULT_EGRESS_DOCUMENT, document, expected, actor, comment
    )


async def get_limits(sessions: async_sessionmaker[AsyncSession], plugin_id: str) -> Versioned:
    """A plugin's limits override (nulls: the settings' defaults), version 0 before any."""
    async with sessions() as s:
        row = await s.get(ConfigDocument, limits_object(plugin_id))
    if row is None:
        return Versioned(dict(DEFAULT_LIMITS), 0)
    return Versioned(dict(row.document), row.version)


async def put_limits(
    sessions: async_sessionmaker[AsyncSession],
    plugin_id: str,
    document: dict[str, Any],
    *,
    expected: int | None,
    actor: str,
    comment: str = "",
) -> Versioned:
    """Replace a plugin's limits override (validated first), with a revision."""
    obj = limits_object(plugin_id)
    return await _put_document(sessions, obj, DEFAULT_LIMITS, document, expected, actor, comment)


async def all_limits(sessions: async_sessionmaker[AsyncSession]) -> dict[str, dict[str, Any]]:
    """Every plugin's limits override: {plugin id: {rate, concurrency}}."""
    stmt = select(ConfigDocument).where(col(ConfigDocument.name).endswith(LIMITS_SUFFIX))
    async with sessions() as s:
        rows = (await s.execute(stmt)).scalars().all()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        pid = _limits_plugin_of(row.name)
        if pid is not None:
            out[pid] = dict(row.document)
    return out


async def _put_document(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    default: dict[str, Any],
    document: dict[str, Any],
    expected: int | None,
    actor: str,
    comment: str,
) -> Versioned:
    now = time.time()
    async with sessions() as s, s.begin():
        row = await s.get(ConfigDocument, name, with_for_update=True)
        before = dict(row.document) if row else copy.deepcopy(default)
        _check(expected, row.version if row else 0)
        if row is None:
            row = ConfigDocument(name=name, document=document, version=1, updated_at=now)
            s.add(row)
        else:
            row.document = document
            row.version += 1
            row.updated_at = now
        row.updated_by = actor
        s.add(
            ConfigRevision(
                time=now, actor=actor, object=name, before=before, after=document, comment=comment
            )
        )
        version = row.version
    return Versioned(document, version)


def _allowlist_value(row: Plugin) -> dict[str, Any]:
    return {"domains": list(row.egress_domains or []), "mode": row.egress_mode}


async def get_allowlist(sessions: async_sessionmaker[AsyncSession], plugin_id: str) -> Versioned:
    async with sessions() as s:
        row = await s.get(Plugin, plugin_id)
    if row is None:
        raise UnknownObject(plugin_id)
    value = _allowlist_value(row)
    value["requested"] = list((row.manifest or {}).get("allowed_domains", []))
    return Versioned(value, row.egress_version)


async def put_allowlist(
    sessions: async_sessionmaker[AsyncSession],
    plugin_id: str,
    domains: list[str],
    mode: str,
    *,
    expected: int | None,
    actor: str,
    comment: str = "",
) -> Versioned:
    now = time.time()
    async with sessions() as s, s.begin():
        row = await s.get(Plugin, plugin_id, with_for_update=True)
        if row is None:
            raise UnknownObject(plugin_id)
        _check(expected, row.egress_version)
        before = _allowlist_value(row)
        row.egress_domains = list(domains)
        row.egress_mode = mode
        row.egress_version += 1
        row.updated_at = now
        after = _allowlist_value(row)
        s.add(
            ConfigRevision(
                time=now,
                actor=actor,
                object=allowlist_object(plugin_id),
                before=before,
                after=after,
                comment=comment,
            )
        )
        version = row.egress_version
    return Versioned(after, version)


def revision_json(row: ConfigRevision) -> dict[str, Any]:
    return {
        "id": row.id,
        "time": row.time,
        "actor": row.actor,
        "object": row.object,
        "before": row.before,
        "after": row.after,
        "diff": diff_values(row.before, row.after),
        "comment": row.comment,
    }


def diff_values(before: Any, after: Any) -> dict[str, Any]:
    """Per top-level key: what was added/removed (lists) or changed (other values)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return {"changed": {"": {"from": before, "to": after}}} if before != after else {}
    out: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        entry: dict[str, Any]
        if isinstance(old, list) and isinstance(new, list):
            entry = {
                "added": [x for x in new if x not in old],
                "removed": [x for x in old if x not in new],
            }
        else:
            entry = {"from": old, "to": new}
        out[key] = entry
    return out


async def list_revisions(
    sessions: async_sessionmaker[AsyncSession],
    *,
    obj: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    stmt = select(ConfigRevision).order_by(col(ConfigRevision.id).desc()).limit(limit)
    if obj is not None:
        stmt = stmt.where(col(ConfigRevision.object) == obj)
    if before_id is not None:
        stmt = stmt.where(col(ConfigRevision.id) < before_id)
    async with sessions() as s:
        return [revision_json(r) for r in (await s.execute(stmt)).scalars().all()]


async def get_revision(sessions: async_sessionmaker[AsyncSession], rev: int) -> dict[str, Any]:
    async with sessions() as s:
        row = await s.get(ConfigRevision, rev)
    if row is None:
        raise UnknownObject(str(rev))
    return revision_json(row)


def revert_target(revision: dict[str, Any]) -> tuple[str, str | None, Any]:
    """(kind, plugin id or None, value to restore) of a revision: `egress`, `allowlist` or
    `limits`."""
    obj = revision["object"]
    if obj == EGRESS:
        return "egress", None, revision["before"]
    lpid = _limits_plugin_of(obj)
    if lpid is not None:
        return "limits", lpid, revision["before"]
    pid = _plugin_of(obj)
    if pid is not None:
        return "allowlist", pid, revision["before"]
    raise UnknownObject(obj)
