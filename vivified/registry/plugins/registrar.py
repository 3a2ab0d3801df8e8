"""Registration and lifecycle of plugins: the rules of DESIGN.md "Lifecycle" over the registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from vivified.registry.audit.bounds import claimed
from vivified.registry.audit.records import record_action
from vivified.registry.audit.writer import AuditWriter
from vivified.registry.errors import DomainError, RefusalStatus
from vivified.registry.identity import registration_tokens
from vivified.registry.identity.tokens import TokenError, TokenService, verify_current
from vivified.registry.manifest.cycles import cycle_warnings
from vivified.registry.manifest.diff import needs_approval, risk_rating
from vivified.registry.manifest.validator import validate_manifest
from vivified.registry.plugins.record import approved_manifest, looks_like_jwt, plugin_record
from vivified.registry.plugins.reregistration import (
    Credential,
    RegistryError,
    apply_reregistration,
    check_existing,
    check_new,
)
from vivified.registry.store.snapshot import SnapshotHolder
from vivified.registry.store.tables import ContractChoice, Grant, Plugin

# How core's lifecycle events leave the registry: `(event type, data)`; the gateway passes
# one in (the registry does not know the event lane). Best effort: it must not raise.
LifecycleHook = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass
class _Step:
    """One audited registry step: who did what to which plugin, and since when."""

    action: str
    actor: str
    target: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Outcome:
    """A successful registration: what the route answers."""

    created: bool
    body: dict[str, Any] = field(default_factory=dict)


class Registrar:
    """Registers plugins and moves them through their lifecycle; every step is audited."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        tokens: TokenService,
        audit: AuditWriter,
        snapshot: SnapshotHolder,
        *,
        registration_mode: str,
        phi_min_retention_days: int,
        refusal_status: RefusalStatus,
    ) -> None:
        """`refusal_status` numbers a refusal in its audit record (see `registry.errors`)."""
        self._sessions = sessions
        # One registry write at a time from this process: concurrent SQLite writers otherwise
        # meet in SQLite's busy handler, which sleeps (up to 100 ms a turn) instead of queueing.
        self._writes = asyncio.Lock()
        self._tokens = tokens
        self._audit = audit
        self._snapshot = snapshot
        self._open = registration_mode == "open"
        self._min_retention = phi_min_retention_days
        self._refusal_status = refusal_status
        self._lifecycle: LifecycleHook | None = None

    def set_lifecycle(self, hook: LifecycleHook) -> None:
        """Where PluginRegistered/StatusChanged/Unregistered go (the event lane)."""
        self._lifecycle = hook

    async def _announce(self, kind: str, data: dict[str, Any]) -> None:
        if self._lifecycle is not None:
            await self._lifecycle(kind, data)

    async def _allowed(
        self, step: _Step, reason: str, status: int, detail: Mapping[str, Any] | None = None
    ) -> None:
        """The audit record of a step done."""
        await self._record(step, "allow", reason, status, detail)

    async def _refused(
        self, step: _Step, exc: DomainError, detail: Mapping[str, Any] | None = None
    ) -> None:
        """The audit record of a step refused, numbered as the gateway will answer it."""
        await self._record(step, "deny", exc.code, self._refusal_status(exc), detail)

    async def _record(
        self,
        step: _Step,
        decision: str,
        reason: str,
        status: int,
        detail: Mapping[str, Any] | None,
    ) -> None:
        await record_action(
            self._audit,
            lane="registry",
            action=step.action,
            actor=step.actor,
            target=step.target,
            decision=decision,
            reason=reason,
            request_id=step.request_id,
            status=status,
            started=step.started,
            detail=detail,
        )

    # -- credentials -----------------------------------------------------------------------

    async def credential(self, bearer: str | None) -> Credential:
        """Identify the registering party; raises RegistryError or TokenError for a bad
        credential."""
        if bearer is None:
            if self._open:
                return Credential("open", "anonymous")
            raise RegistryError("missing_token", "registration needs a registration token")
        if looks_like_jwt(bearer):
            claims = await verify_current(self._tokens, self._snapshot, bearer)
            return Credential("plugin_token", claims.plugin_id, claims.plugin_id)
        row = await registration_tokens.find_usable(self._sessions, bearer)
        if row is None:
            raise RegistryError(
                "invalid_registration_token",
                "the registration token is unknown, expired, revoked or used up",
            )
        return Credential("registration_token", f"regtoken:{row.id}", row.plugin_id, row.id)

    # -- registration ------------------------------------------------------------------------

    def validate(self, body: object) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        snap = self._snapshot.current
        result = validate_manifest(
            body,
            blocklist=snap.egress.blocked_domains,
            phi_min_retention_days=self._min_retention,
            known_plugins=set(snap.plugins),
        )
        if not result.ok or result.manifest is None:
            raise RegistryError(
                "invalid_manifest",
                f"the manifest has {len(result.errors)} problem(s)",
                [p.to_dict() for p in result.errors],
            )
        manifest = result.manifest
        graph = {pid: view.dependencies for pid, view in snap.plugins.items()}
        graph[manifest["id"]] = frozenset(manifest.get("dependencies") or ())
        cycles = cycle_warnings(graph, only=manifest["id"])
        return manifest, [w.to_dict() for w in (*result.warnings, *cycles)]

    async def register(self, body: object, bearer: str | None, request_id: str) -> Outcome:
        """Register or re-register; audits the attempt whatever its outcome."""
        pid = body.get("id") if isinstance(body, Mapping) else None
        # Until a credential vouches for the caller, the id is only a claim: `claimed:` and
        # its first 64 characters (audit_bounds.claimed), never a plugin's name in the trail.
        step = _Step(
            "register",
            "anonymous",
            claimed(pid) if isinstance(pid, str) and pid else "",
            request_id,
        )
        try:
            cred = await self.credential(bearer)
            step.actor = cred.subject
            if cred.kind != "open" and isinstance(pid, str):
                step.target = pid  # a checked caller's id (the writer still bounds it)
            manifest, warnings = self.validate(body)
            outcome = await self._store(manifest, warnings, cred)
        except DomainError as exc:  # a RegistryError, or the TokenError of a plugin token
            await self._refused(step, exc, {"errors": [e.get("code") for e in exc.errors or ()]})
            raise
        await self._snapshot.changed("plugins")
        step.target = manifest["id"]
        reason = "registered" if outcome.created else "reregistered"
        status = 201 if outcome.created else 200
        await self._allowed(step, reason, status, {"status": outcome.body["status"]})
        await self._announce(
            "PluginRegistered",
            {
                "plugin_id": manifest["id"],
                "version": str(manifest.get("version", "")),
                "status": outcome.body["status"],
            },
        )
        return outcome

    async def _store(
        self, manifest: dict[str, Any], warnings: list[dict[str, Any]], cred: Credential
    ) -> Outcome:
        pid = manifest["id"]
        now = time.time()
        risk = risk_rating(manifest)
        try:
            async with self._writes, self._sessions() as s, s.begin():
                row = await s.get(Plugin, pid, with_for_update=True)
                if row is None:
                    check_new(pid, cred)
                    await self._consume(s, cred)
                    auto = not needs_approval(manifest)
                    row = Plugin(
                        id=pid,
                        name=manifest["name"],
                        version=manifest["version"],
                        manifest=manifest,
                        status="active" if auto else "registered",
                        owner=cred.subject,
                        base_url=manifest["base_url"],
                        risk=risk.level,
                        risk_score=risk.score,
                        egress_domains=list(manifest.get("allowed_domains", [])) if auto else [],
                        created_at=now,
                        updated_at=now,
                    )
                    s.add(row)
                    await s.flush()
                    created, diff = True, None
                else:
                    check_existing(pid, cred)
                    await self._consume(s, cred)
                    diff = apply_reregistration(row, manifest, now)
                    row.risk, row.risk_score = risk.level, risk.score
                    created = False
                gen, status = row.gen, row.status
        except IntegrityError as exc:
            raise RegistryError("plugin_id_taken", f"plugin id {pid!r} is taken") from exc
        issued = self._tokens.issue_plugin_token(pid, gen)
        body: dict[str, Any] = {
            "id": pid,
            "status": status,
            "token": issued.token,
            "expires_at": issued.expires_at,
            "risk": {"level": risk.level, "score": risk.score, "factors": list(risk.factors)},
            "warnings": warnings,
        }
        if diff is not None:
            body["diff"] = diff
        return Outcome(created, body)

    async def _consume(self, s: AsyncSession, cred: Credential) -> None:
        if cred.token_id is not None and not await registration_tokens.consume(s, cred.token_id):
            raise RegistryError(
                "invalid_registration_token",
                "the registration token is expired, revoked or used up",
            )

    # -- lifecycle ---------------------------------------------------------------------------

    async def enable(self, pid: str, actor: str, request_id: str) -> dict[str, Any]:
        """Approve or re-enable; the stored manifest is validated again first."""
        step = _Step("enable", actor, pid, request_id)
        async with self._writes, self._sessions() as s, s.begin():
            row = await s.get(Plugin, pid, with_for_update=True)
            if row is None:
                raise RegistryError("not_found", f"no plugin {pid!r}")
            try:
                self.validate(row.manifest)
            except RegistryError as exc:
                await self._refused(step, exc)
                raise
            approved = approved_manifest(row)
            requested = list(row.manifest.get("allowed_domains", []))
            if approved is None:
                row.egress_domains = requested
            elif row.pending:
                known = set(row.egress_domains) | set(approved.get("allowed_domains", []))
                row.egress_domains = row.egress_domains + [d for d in requested if d not in known]
            row.pending = None
            before = row.status
            row.status = "active"
            row.updated_at = time.time()
            record = plugin_record(row)
        await self._snapshot.changed("plugins")
        await self._allowed(step, "enabled", 200)
        await self._announce(
            "PluginStatusChanged",
            {"plugin_id": pid, "from": before, "to": "active", "reason": "enabled", "actor": actor},
        )
        return record

    async def disable(
        self, pid: str, actor: str, request_id: str, *, reason: str = "disabled"
    ) -> dict[str, Any]:
        """Quarantine: stop routing and revoke every token of the plugin at once."""
        step = _Step("disable", actor, pid, request_id)
        async with self._writes, self._sessions() as s, s.begin():
            row = await s.get(Plugin, pid, with_for_update=True)
            if row is None:
                raise RegistryError("not_found", f"no plugin {pid!r}")
            before = row.status
            row.status = "disabled"
            row.gen += 1
            row.updated_at = time.time()
            record = plugin_record(row)
        await self._snapshot.changed("plugins")
        await self._allowed(step, reason, 200)
        await self._announce(
            "PluginStatusChanged",
            {"plugin_id": pid, "from": before, "to": "disabled", "reason": reason, "actor": actor},
        )
        return record

    async def unregister(self, pid: str, actor: str, request_id: str) -> None:
        """Remove the plugin, its grants and contract choices; its tokens die with it."""
        step = _Step("unregister", actor, pid, request_id)
        async with self._writes, self._sessions() as s, s.begin():
            row = await s.get(Plugin, pid, with_for_update=True)
            if row is None:
                raise RegistryError("not_found", f"no plugin {pid!r}")
            await s.delete(row)
            await s.execute(
                delete(Grant).where(or_(col(Grant.caller) == pid, col(Grant.target) == pid))
            )
            await s.execute(delete(ContractChoice).where(col(ContractChoice.plugin_id) == pid))
        await self._snapshot.changed("plugins")
        await self._allowed(step, "unregistered", 204)
        await self._announce("PluginUnregistered", {"plugin_id": pid, "actor": actor})

    async def refresh_token(self, pid: str, bearer: str, request_id: str) -> dict[str, Any]:
        """Swap a valid token of `pid` for a fresh one of the same generation."""
        # from the path of an unauthenticated call: a claim until the token vouches for it
        step = _Step("token_refresh", "anonymous", claimed(pid), request_id)
        try:
            claims = await verify_current(self._tokens, self._snapshot, bearer)
        except TokenError as exc:
            await self._refused(step, exc)
            raise
        step.actor, step.target = claims.plugin_id, pid
        if claims.plugin_id != pid:
            other = RegistryError(
                "token_for_other_plugin", "a plugin may refresh only its own token"
            )
            await self._refused(step, other)
            raise other
        issued = self._tokens.issue_plugin_token(pid, claims.gen)
        await self._allowed(step, "token_refreshed", 200)
        return {"token": issued.token, "expires_at": issued.expires_at}
