"""The config API's logic: validate, write with a version check, record, propagate, audit.

A write that fails validation raises before anything is stored, so the last good config
stays in force. After a commit the local snapshot reloads and a change notice goes out.

Documents round-trip: what a GET answers may be written back as is. Its read-only members
(`version`; an allowlist's `requested`) are ignored when they equal the stored ones and
refused when they differ (`stale_version`, `read_only_member`); `version` works as If-Match
when none was sent. A full write (`full=True`, the API's PUT) must name every member — a
missing one is refused (`missing_member`), never silently reset — and `patch_*` applies an
RFC 7396 JSON Merge Patch to the stored document (null removes a member: a top-level one
goes back to its default), then writes the result like a full PUT.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.config.documents import (
    ALLOWLIST_DEFAULTS,
    ConfigError,
    merge_patch,
    missing_members,
    patch_object,
    problem,
    retry_patch,
    validate_allowlist,
    version_member,
    without_comment,
)
from vivified.policy.domains import INTERNAL_NAME_EXCEPTION, is_internal_name
from vivified.policy.egress_settings import DEFAULT_EGRESS_DOCUMENT, validate_egress_document
from vivified.policy.rate_limits import limits_problems
from vivified.registry.audit.records import record_action
from vivified.registry.audit.writer import AuditWriter
from vivified.registry.errors import RefusalStatus
from vivified.registry.store import config_store as store
from vivified.registry.store.snapshot import SnapshotHolder


@dataclass(frozen=True)
class _Write:
    """One config write as its audit record names it: who, what, on which object, when."""

    actor: str
    action: str
    target: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)


class ConfigService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        snapshot: SnapshotHolder,
        audit: AuditWriter,
        *,
        refusal_status: RefusalStatus,
    ) -> None:
        """`refusal_status` numbers a refusal in its audit record (see `registry.errors`)."""
        self._sessions = sessions
        self._snapshot = snapshot
        self._audit = audit
        self._refusal_status = refusal_status

    async def get_egress(self) -> store.Versioned:
        """The egress document with every member (defaults filled in), ready to PUT back."""
        got = await store.get_egress(self._sessions)
        return store.Versioned({**copy.deepcopy(DEFAULT_EGRESS_DOCUMENT), **got.value}, got.version)

    async def put_egress(
        self,
        body: Any,
        *,
        expected: int | None,
        actor: str,
        comment: str,
        request_id: str,
        full: bool = False,
    ) -> store.Versioned:
        write = _Write(actor, "egress_update", "egress", request_id)
        body = without_comment(body)
        async with self._refusals_audited(write):
            body, expected = version_member(body, expected)
            errors = (missing_members(body, DEFAULT_EGRESS_DOCUMENT) if full else []) + (
                validate_egress_document(body)
            )
            if errors:
                raise ConfigError("invalid_egress_document", "the document is invalid", errors)
        result = await self._write(
            store.put_egress(self._sessions, body, expected=expected, actor=actor, comment=comment),
            write,
        )
        await self._snapshot.changed("egress")
        return result

    async def patch_egress(
        self, patch: Any, *, expected: int | None, actor: str, comment: str, request_id: str
    ) -> store.Versioned:
        """Apply a JSON Merge Patch to the stored egress document; a null top-level member
        goes back to its default. Written like a full PUT (validated whole, versioned)."""
        patch = patch_object(patch, "the egress document")

        async def write(
            value: dict[str, Any], body: dict[str, Any], version: int
        ) -> store.Versioned:
            merged = {**copy.deepcopy(DEFAULT_EGRESS_DOCUMENT), **merge_patch(value, body)}
            return await self.put_egress(
                merged,
                expected=version,
                actor=actor,
                comment=comment,
                request_id=request_id,
                full=True,
            )

        return await retry_patch(patch, expected, self.get_egress, write)

    async def get_allowlist(self, plugin_id: str) -> store.Versioned:
        try:
            return await store.get_allowlist(self._sessions, plugin_id)
        except store.UnknownObject as exc:
            raise ConfigError("not_found", f"no plugin {plugin_id!r}") from exc

    async def patch_allowlist(
        self,
        plugin_id: str,
        patch: Any,
        *,
        expected: int | None,
        actor: str,
        comment: str,
        request_id: str,
    ) -> store.Versioned:
        """Apply a JSON Merge Patch to a plugin's `{domains, mode}` (null: the default)."""
        patch = patch_object(patch, "an allowlist")

        async def write(
            value: dict[str, Any], body: dict[str, Any], version: int
        ) -> store.Versioned:
            merged = {**ALLOWLIST_DEFAULTS, **merge_patch(value, body)}
            if "requested" not in patch:  # read-only: compared only when the patch names it
                merged.pop("requested", None)
            return await self.put_allowlist(
                plugin_id,
                merged,
                expected=version,
                actor=actor,
                comment=comment,
                request_id=request_id,
                full=True,
            )

        return await retry_patch(patch, expected, lambda: self.get_allowlist(plugin_id), write)

    async def put_allowlist(
        self,
        plugin_id: str,
        body: Any,
        *,
        expected: int | None,
        actor: str,
        comment: str,
        request_id: str,
        full: bool = False,
    ) -> store.Versioned:
        write = _Write(actor, "allowlist_update", plugin_id, request_id)
        self._known(plugin_id)
        egress = self._snapshot.current.egress
        async with self._refusals_audited(write):
            body, expected = version_member(body, expected)
            if isinstance(body, dict) and "requested" in body:  # read-only: the manifest's
                body = dict(body)
                requested = body.pop("requested")
                current = await self.get_allowlist(plugin_id)
                if requested != current.value.get("requested"):
                    raise ConfigError(
                        "read_only_member",
                        "requested is the manifest's list and read-only: send it as GET "
                        "answered it, or leave it out",
                        [problem("/requested", "read_only", "differs from the stored value")],
                    )
            missing = missing_members(body, ALLOWLIST_DEFAULTS) if full else []
            try:
                domains, mode = validate_allowlist(
                    body, egress.blocked_domains, tuple(egress.host_overrides)
                )
            except ConfigError as invalid:  # every problem at once, the missing ones first
                if not missing:
                    raise
                missing += [dict(e) for e in invalid.errors or ()]
            if missing:
                raise ConfigError("invalid_allowlist", "the allowlist is invalid", missing)
        internal = [d for d in domains if is_internal_name(d)]
        if internal:  # the revision and the audit record both say so
            note = f"[{INTERNAL_NAME_EXCEPTION}: {', '.join(internal)}]"
            comment = f"{comment} {note}" if comment else note
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
            write,
            exception=(INTERNAL_NAME_EXCEPTION, internal) if internal else None,
        )
        await self._snapshot.changed("allowlist")
        return result

    async def get_limits(self, plugin_id: str) -> store.Versioned:
        """A plugin's `{rate, concurrency}` override (null members: the settings' defaults)."""
        self._known(plugin_id)
        return await store.get_limits(self._sessions, plugin_id)

    async def put_limits(
        self,
        plugin_id: str,
        body: Any,
        *,
        expected: int | None,
        actor: str,
        comment: str,
        request_id: str,
    ) -> store.Versioned:
        """Replace a plugin's limits override: validated, versioned, a revision, audited, and
        propagated (every replica reloads its snapshot, and the limits with it)."""
        write = _Write(actor, "limits_update", plugin_id, request_id)
        self._known(plugin_id)
        async with self._refusals_audited(write):
            body, expected = version_member(body, expected)
            body = without_comment(body)
            problems = limits_problems(body)
            if problems:
                raise ConfigError("invalid_limits", "the limits are invalid", problems)
        document = {**store.DEFAULT_LIMITS, **body}
        result = await self._write(
            store.put_limits(
                self._sessions, plugin_id, document, expected=expected, actor=actor, comment=comment
            ),
            write,
        )
        await self._snapshot.changed("limits")
        return result

    async def get_revision(self, rev: int) -> dict[str, Any]:
        try:
            return await store.get_revision(self._sessions, rev)
        except store.UnknownObject as exc:
            raise ConfigError("not_found", f"no revision {rev}") from exc

    async def revert(
        self, rev: int, *, actor: str, comment: str, request_id: str
    ) -> dict[str, Any]:
        try:
            revision = await store.get_revision(self._sessions, rev)
            kind, pid, value = store.revert_target(revision)
        except store.UnknownObject as exc:
            raise ConfigError("not_found", f"no revertible revision {rev}") from exc
        note = comment or f"revert of revision {rev}"
        if kind == "egress":
            value = {**copy.deepcopy(DEFAULT_EGRESS_DOCUMENT), **(value or {})}
            result = await self.put_egress(
                value, expected=None, actor=actor, comment=note, request_id=request_id
            )
            return {"object": "egress", "version": result.version, "value": result.value}
        assert pid is not None
        if kind == "limits":
            got = await self.put_limits(
                pid,
                value or dict(store.DEFAULT_LIMITS),
                expected=None,
                actor=actor,
                comment=note,
                request_id=request_id,
            )
            return {"object": store.limits_object(pid), "version": got.version, "value": got.value}
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

    def _known(self, plugin_id: str) -> None:
        if plugin_id not in self._snapshot.current.plugins:
            raise ConfigError("not_found", f"no plugin {plugin_id!r}")

    async def _write(
        self,
        op: Awaitable[store.Versioned],
        write: _Write,
        exception: tuple[str, list[str]] | None = None,
    ) -> store.Versioned:
        """Await the store's write and record it; a lost version race is a refusal."""
        try:
            result = await op
        except store.VersionConflict as exc:
            stale = ConfigError(
                "stale_version",
                f"the object changed (now version {exc.current}); GET it and retry",
            )
            await self._refused(stale, write)
            raise stale from exc
        except store.UnknownObject as exc:
            raise ConfigError("not_found", f"no such object {write.target!r}") from exc
        detail: dict[str, Any] = {"version": result.version}
        if exception is not None:
            detail[exception[0]] = exception[1]
        await record_action(
            self._audit,
            lane="admin",
            action=write.action,
            actor=write.actor,
            target=write.target,
            decision="allow",
            reason="changed" if exception is None else exception[0],
            request_id=write.request_id,
            status=200,
            started=write.started,
            detail=detail,
        )
        return result

    @contextlib.asynccontextmanager
    async def _refusals_audited(self, write: _Write) -> AsyncIterator[None]:
        """A ConfigError raised in the block is audited as a refusal of `write`, then raised."""
        try:
            yield
        except ConfigError as exc:
            await self._refused(exc, write)
            raise

    async def _refused(self, exc: ConfigError, write: _Write) -> None:
        """Audit a refused write: reason `invalid` for a body that fails validation (any
        `invalid_*` code), else the refusal's code (`stale_version`, `read_only_member`)."""
        await record_action(
            self._audit,
            lane="admin",
            action=write.action,
            actor=write.actor,
            target=write.target,
            decision="deny",
            reason="invalid" if exc.code.startswith("invalid_") else exc.code,
            request_id=write.request_id,
            status=self._refusal_status(exc),
            started=write.started,
        )
