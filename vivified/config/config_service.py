"""The config API's logic: validate, write with a version check, record, propagate, audit.

A write that fails validation raises before anything is stored, so the last good config
stays in force. After a commit the local snapshot reloads and a change notice goes out.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.policy.domains import check_domain_entry
from vivified.policy.egress_settings import validate_egress_document
from vivified.registry.audit.writer import AuditWriter
from vivified.registry.store import config_store as store
from vivified.registry.store.snapshot import SnapshotHolder

MODES = ("enforce", "report")
MAX_DOMAINS = 1000


class ConfigError(Exception):
    def __init__(
        self, status: int, code: str, message: str, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors


def _problem(path: str, code: str, message: str) -> dict[str, str]:
    return {"path": path, "code": code, "message": message}


def validate_allowlist(body: Any, blocklist: tuple[str, ...]) -> tuple[list[str], str]:
    """`{"domains": [...], "mode": "enforce"|"report"}` → normalised domains and mode."""
    if not isinstance(body, dict):
        raise ConfigError(
            422,
            "invalid_body",
            "send {domains, mode}",
            [_problem("", "invalid_type", "expected a JSON object")],
        )
    errors = [
        _problem(f"/{k}", "unknown_field", "known fields: domains, mode, comment")
        for k in body
        if k not in {"domains", "mode", "comment"}
    ]
    domains_raw = body.get("domains")
    mode = body.get("mode", "enforce")
    if mode not in MODES:
        errors.append(_problem("/mode", "invalid_mode", "mode is enforce or report"))
    domains: list[str] = []
    if not isinstance(domains_raw, list) or len(domains_raw) > MAX_DOMAINS:
        errors.append(_problem("/domains", "invalid_type", "domains is a list of names"))
    else:
        for i, raw in enumerate(domains_raw):
            entry = check_domain_entry(raw, blocklist)
            for p in entry.problems:
                errors.append(_problem(f"/domains/{i}", p.code, p.message))
            if entry.ok and entry.normalized is not None:
                if entry.normalized in domains:
                    errors.append(_problem(f"/domains/{i}", "duplicate_domain", "listed twice"))
                else:
                    domains.append(entry.normalized)
    if errors:
        raise ConfigError(422, "invalid_allowlist", "the allowlist is invalid", errors)
    return domains, str(mode)


class ConfigService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        snapshot: SnapshotHolder,
        audit: AuditWriter,
    ) -> None:
        self._sessions = sessions
        self._snapshot = snapshot
        self._audit = audit

    async def get_egress(self) -> store.Versioned:
        return await store.get_egress(self._sessions)

    async def put_egress(
        self, body: Any, *, expected: int | None, actor: str, comment: str, request_id: str
    ) -> store.Versioned:
        started = time.perf_counter()
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "comment"}
        errors = validate_egress_document(body)
        if errors:
            await self._record(
                actor, "egress_update", "egress", "deny", "invalid", request_id, 422, started
            )
            raise ConfigError(422, "invalid_egress_document", "the document is invalid", errors)
        result = await self._write(
            store.put_egress(self._sessions, body, expected=expected, actor=actor, comment=comment),
            actor,
            "egress_update",
            "egress",
            request_id,
            started,
        )
        await self._snapshot.changed("egress")
        return result

    async def get_allowlist(self, plugin_id: str) -> store.Versioned:
        try:
            return await store.get_allowlist(self._sessions, plugin_id)
        except store.UnknownObject as exc:
            raise ConfigError(404, "not_found", f"no plugin {plugin_id!r}") from exc

    async def put_allowlist(
        self,
        plugin_id: str,
        body: Any,
        *,
        expected: int | None,
        actor: str,
        comment: str,
        request_id: str,
    ) -> store.Versioned:
        started = time.perf_counter()
        if plugin_id not in self._snapshot.current.plugins:
            raise ConfigError(404, "not_found", f"no plugin {plugin_id!r}")
        try:
            domains, mode = validate_allowlist(body, self._snapshot.current.egress.blocked_domains)
        except ConfigError:
            await self._record(
                actor, "allowlist_update", plugin_id, "deny", "invalid", request_id, 422, started
            )
            raise
        result = await self._write(
            store.put_allowlist(
                self._sessions,
                plugin_id,
                domains,
                mode,
                expected=expected,
                actor=actor,
                comment=comment,
            ),
            actor,
            "allowlist_update",
            plugin_id,
            request_id,
            started,
        )
        await self._snapshot.changed("allowlist")
        return result

    async def revert(
        self, rev: int, *, actor: str, comment: str, request_id: str
    ) -> dict[str, Any]:
        try:
            revision = await store.get_revision(self._sessions, rev)
            kind, pid, value = store.revert_target(revision)
        except store.UnknownObject as exc:
            raise ConfigError(404, "not_found", f"no revertible revision {rev}") from exc
        note = comment or f"revert of revision {rev}"
        if kind == "egress":
            result = await self.put_egress(
                value, expected=None, actor=actor, comment=note, request_id=request_id
            )
            return {"object": "egress", "version": result.version, "value": result.value}
        assert pid is not None
        result = await self.put_allowlist(
            pid,
            value or {"domains": [], "mode": "enforce"},
            expected=None,
            actor=actor,
            comment=note,
            request_id=request_id,
        )
        return {
            "object": store.allowlist_object(pid),
            "version": result.version,
            "value": result.value,
        }

    async def _write(
        self, op: Any, actor: str, action: str, target: str, request_id: str, started: float
    ) -> store.Versioned:
        try:
            result: store.Versioned = await op
        except store.VersionConflict as exc:
            await self._record(
                actor, action, target, "deny", "stale_version", request_id, 412, started
            )
            raise ConfigError(
                412,
                "stale_version",
                f"the object changed (now version {exc.current}); GET it and retry",
            ) from exc
        except store.UnknownObject as exc:
            raise ConfigError(404, "not_found", f"no such object {target!r}") from exc
        await self._record(
            actor,
            action,
            target,
            "allow",
            "changed",
            request_id,
            200,
            started,
            {"version": result.version},
        )
        return result

    async def _record(
        self,
        actor: str,
        action: str,
        target: str,
        decision: str,
        reason: str,
        request_id: str,
        status: int,
        started: float,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self._audit.record_timed(
            lane="admin",
            action=action,
            actor=actor,
            target=target,
            decision=decision,
            reason=reason,
            request_id=request_id,
            status=status,
            started=started,
            detail=detail,
        )
