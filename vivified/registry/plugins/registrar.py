"""Registration and lifecycle of plugins: the rules of DESIGN.md "Lifecycle" over the registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from vivified.registry.audit.bounds import claimed
from vivified.registry.audit.writer import AuditWriter
from vivified.registry.identity import registration_tokens
from vivified.registry.identity.tokens import TokenError, TokenService
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
    ) -> None:
        self._sessions = sessions
        # One registry write at a time from this process: concurrent SQLite writers otherwise
        # meet in SQLite's busy handler, which sleeps (up to 100 ms a turn) instead of queueing.
        self._writes = asyncio.Lock()
        self._tokens = tokens
        self._audit = audit
        self._snapshot = snapshot
        self._open = registration_mode == "open"
        self._min_retention = phi_min_retention_days

    # -- credentials -----------------------------------------------------------------------

    async def credential(self, bearer: str | None) -> Credential:
        """Identify the registering party; raises RegistryError(401) for a bad credential."""
        if bearer is None:
            if self._open:
                return Credential("open", "anonymous")
            raise RegistryError(401, "missing_token", "registration needs a registration token")
        if looks_like_jwt(bearer):
            try:
                claims = await self._tokens.verify_plugin_token(
                    bearer, self._snapshot.current.plugin_gen
                )
            except TokenError as exc:
                raise RegistryError(401, exc.code, exc.message) from exc
            return Credential("plugin_token", claims.plugin_id, claims.plugin_id)
        row = await registration_tokens.find_usable(self._sessions, bearer)
        if row is None:
            raise RegistryError(
                401,
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
                422,
                "invalid_manifest",
                f"the manifest has {len(result.errors)} problem(s)",
                [p.to_dict() for p in result.errors],
            )
        return result.manifest, [w.to_dict() for w in result.warnings]

    async def register(self, body: object, bearer: str | None, request_id: str) -> Outcome:
        """Register or re-register; audits the attempt whatever its outcome."""
        started = time.perf_counter()
        actor = "anonymous"
        pid = body.get("id") if isinstance(body, Mapping) else None
        # Until a credential vouches for the caller, the id is only a claim: `claimed:` and
        # its first 64 characters (audit_bounds.claimed), never a plugin's name in the trail.
        target = claimed(pid) if isinstance(pid, str) and pid else ""
        try:
            cred = await self.credential(bearer)
            actor = cred.subject
            if cred.kind != "open" and isinstance(pid, str):
                target = pid  # a checked caller's id (the writer still bounds it)
            manifest, warnings = self.validate(body)
            outcome = await self._store(manifest, warnings, cred)
        except RegistryError as exc:
            await self._record(
                "register",
                actor,
                target,
                "deny",
                exc.code,
                request_id,
                exc.status,
                started,
                {"errors": [e.get("code") for e in exc.errors or ()]},
            )
            raise
        await self._snapshot.changed("plugins")
        status = 201 if outcome.created else 200
        await self._record(
            "register",
            actor,
            manifest["id"],
            "allow",
            "registered" if outcome.created else "reregistered",
            request_id,
            status,
            started,
            {"status": outcome.body["status"]},
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
            raise RegistryError(409, "plugin_id_taken", f"plugin id {pid!r} is taken") from exc
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
                401,
                "invalid_registration_token",
                "the registration token is expired, revoked or used up",
            )

    # -- lifecycle ---------------------------------------------------------------------------

    async def enable(self, pid: str, actor: str, request_id: str) -> dict[str, Any]:
        """Approve or re-enable; the stored manifest is validated again first."""
        started = time.perf_counter()
        async with self._writes, self._sessions() as s, s.begin():
            row = await s.get(Plugin, pid, with_for_update=True)
            if row is None:
                raise RegistryError(404, "not_found", f"no plugin {pid!r}")
            try:
                self.validate(row.manifest)
            except RegistryError:
                await self._record(
                    "enable", actor, pid, "deny", "invalid_manifest", request_id, 422, started
                )
                raise
            approved = approved_manifest(row)
            requested = list(row.manifest.get("allowed_domains", []))
            if approved is None:
                row.egress_domains = requested
            elif row.pending:
                known = set(row.egress_domains) | set(approved.get("allowed_domains", []))
                row.egress_domains = row.egress_domains + [d for d in requested if d not in known]
            row.pending = None
            row.status = "active"
            row.updated_at = time.time()
            record = plugin_record(row)
        await self._snapshot.changed("plugins")
        await self._record("enable", actor, pid, "allow", "enabled", request_id, 200, started)
        return record

    async def disable(
        self, pid: str, actor: str, request_id: str, *, reason: str = "disabled"
    ) -> dict[str, Any]:
        """Quarantine: stop routing and revoke every token of the plugin at once."""
        started = time.perf_counter()
        async with self._writes, self._sessions() as s, s.begin():
            row = await s.get(Plugin, pid, with_for_update=True)
            if row is None:
                raise RegistryError(404, "not_found", f"no plugin {pid!r}")
            row.status = "disabled"
            row.gen += 1
            row.updated_at = time.time()
            record = plugin_record(row)
        await self._snapshot.changed("plugins")
        await self._record("disable", actor, pid, "allow", reason, request_id, 200, started)
        return record

    async def unregister(self, pid: str, actor: str, request_id: str) -> None:
        """Remove the plugin, its grants and contract choices; its tokens die with it."""
        started = time.perf_counter()
        async with self._writes, self._sessions() as s, s.begin():
            row = await s.get(Plugin, pid, with_for_update=True)
            if row is None:
                raise RegistryError(404, "not_found", f"no plugin {pid!r}")
            await s.delete(row)
            await s.execute(
                delete(Grant).where(or_(col(Grant.caller) == pid, col(Grant.target) == pid))
            )
            await s.execute(delete(ContractChoice).where(col(ContractChoice.plugin_id) == pid))
        await self._snapshot.changed("plugins")
        await self._record(
            "unregister", actor, pid, "allow", "unregistered", request_id, 204, started
        )

    async def refresh_token(self, pid: str, bearer: str, request_id: str) -> dict[str, Any]:
        """Swap a valid token of `pid` for a fresh one of the same generation."""
        started = time.perf_counter()
        try:
            claims = await self._tokens.verify_plugin_token(
                bearer, self._snapshot.current.plugin_gen
            )
        except TokenError as exc:
            await self._record(
                "token_refresh",
                "anonymous",
                claimed(pid),  # from the path of an unauthenticated call
                "deny",
                exc.code,
                request_id,
                401,
                started,
            )
            raise RegistryError(401, exc.code, exc.message) from exc
        if claims.plugin_id != pid:
            await self._record(
                "token_refresh",
                claims.plugin_id,
                pid,
                "deny",
                "token_for_other_plugin",
                request_id,
                403,
                started,
            )
            raise RegistryError(
                403, "token_for_other_plugin", "a plugin may refresh only its own token"
            )
        issued = self._tokens.issue_plugin_token(pid, claims.gen)
        await self._record(
            "token_refresh", pid, pid, "allow", "token_refreshed", request_id, 200, started
        )
        return {"token": issued.token, "expires_at": issued.expires_at}

    async def _record(
        self,
        action: str,
        actor: str,
        target: str,
        decision: str,
        reason: str,
        request_id: str,
        status: int,
        started: float,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        await self._audit.record_timed(
            lane="registry",
            action=action,
            actor=actor,
            target=target,
            decision=decision,
            reason=reason,
            request_id=request_id,
            status=status,
            started=started,
            detail=dict(detail or {}),
        )
