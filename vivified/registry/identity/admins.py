"""Admin users and their API tokens: bootstrap, issue, verify, revoke.

Nobody gives power it does not hold: every function that grants or removes scopes takes the
acting principal (`by`). A token carries only scopes its minter holds and never outlives the
minter's token; acting on another admin's tokens needs `admins:manage`, and minting or
revoking one also needs every scope it carries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.registry.errors import DomainError
from vivified.registry.identity.secrets import hash_secret, new_secret, secrets_equal
from vivified.registry.store.tables import AdminToken, AdminUser

SCOPES: tuple[str, ...] = (
    "plugins:manage",
    "egress:manage",
    "grants:manage",
    "audit:read",
    "phi:read",
    "admins:manage",
    "keys:manage",
    "metrics:read",
)
BOOTSTRAP_NAME = "bootstrap"
MANAGE_SCOPE = "admins:manage"
ADMIN_TOKEN_PREFIX = "vva_"  # noqa: S105 (a prefix, not a secret)
MIN_CONFIGURED_TOKEN_LENGTH = 24


class AdminError(DomainError):
    """An admin operation cannot be carried out; `code` is stable, `subject` names the admin
    acted upon (`admin:<name>`) when known."""


@dataclass(frozen=True)
class AdminPrincipal:
    """An authenticated admin: who, through which token, with which scopes."""

    user_id: str
    name: str
    token_id: str
    scopes: frozenset[str]
    expires_at: float | None = None  # of the token used; None for a token that never expires
    email: str = ""  # an OpenID Connect user's, for display (its `name` is `oidc:<iss>#<sub>`)
    oidc: bool = False  # signed in through the OpenID Provider (scopes from its claim)

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"

    def has(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class IssuedAdminToken:
    token: str
    token_id: str
    user_id: str
    scopes: tuple[str, ...]
    expires_at: float | None
    user_name: str = ""


@dataclass(frozen=True)
class RevokedAdminToken:
    token_id: str
    user_id: str
    user_name: str
    scopes: tuple[str, ...]


def check_scopes(scopes: Collection[str]) -> list[str]:
    """Validate scope names; returns them sorted and unique."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise AdminError("unknown_scope", f"unknown scopes {unknown}; known: {list(SCOPES)}")
    return sorted(set(scopes))


async def ensure_bootstrap_admin(
    sessions: async_sessionmaker[AsyncSession], configured_token: str = ""
) -> str | None:
    """Create the bootstrap admin on first start.

    With `configured_token` (VIVIFIED_ADMIN_TOKEN) that token is registered for the bootstrap
    admin (idempotent) and None is returned. Otherwise a token is generated on the very first
    start only and returned once, for the caller to print; later starts return None.
    """
    if configured_token and len(configured_token) < MIN_CONFIGURED_TOKEN_LENGTH:
        raise AdminError(
            "weak_admin_token",
            f"VIVIFIED_ADMIN_TOKEN must be at least {MIN_CONFIGURED_TOKEN_LENGTH} characters",
        )
    now = time.time()
    async with sessions() as s, s.begin():
        user, created = await _bootstrap_user(s, now)
        if configured_token:
            digest = hash_secret(configured_token)
            exists = (
                await s.execute(select(AdminToken).where(AdminToken.token_hash == digest))
            ).scalar_one_or_none()
            if exists is None:
                s.add(_full_token(user.id, "VIVIFIED_ADMIN_TOKEN", digest, now))
            return None
        if not created:
            return None
        token, digest = new_secret(ADMIN_TOKEN_PREFIX)
        s.add(_full_token(user.id, BOOTSTRAP_NAME, digest, now))
        return token


async def _bootstrap_user(s: AsyncSession, now: float) -> tuple[AdminUser, bool]:
    """The bootstrap admin, created with every scope when missing; True when just created."""
    user = (
        await s.execute(select(AdminUser).where(AdminUser.name == BOOTSTRAP_NAME))
    ).scalar_one_or_none()
    if user is not None:
        return user, False
    user = AdminUser(id=uuid.uuid4().hex, name=BOOTSTRAP_NAME, scopes=list(SCOPES), created_at=now)
    s.add(user)
    await s.flush()
    return user, True


def _full_token(user_id: str, name: str, digest: str, now: float) -> AdminToken:
    """A bootstrap token: every scope, no expiry."""
    return AdminToken(
        id=uuid.uuid4().hex,
        user_id=user_id,
        name=name,
        token_hash=digest,
        scopes=list(SCOPES),
        created_at=now,
    )


async def authenticate_admin(
    sessions: async_sessionmaker[AsyncSession], token: str
) -> AdminPrincipal | None:
    """The admin behind `token`, or None (unknown, revoked, expired or disabled)."""
    digest = hash_secret(token)
    async with sessions() as s:
        row = (
            await s.execute(
                select(AdminToken, AdminUser)
                .join(AdminUser, AdminUser.id == AdminToken.user_id)  # type: ignore[arg-type]
                .where(AdminToken.token_hash == digest)
            )
        ).first()
    if row is None:
        return None
    tok, user = row
    if not secrets_equal(tok.token_hash, digest):
        return None
    return _principal(tok, user)


def _principal(tok: AdminToken, user: AdminUser) -> AdminPrincipal | None:
    """The principal of a token row and its user, or None (revoked, expired or disabled)."""
    now = time.time()
    if tok.revoked_at is not None or user.disabled:
        return None
    if tok.expires_at is not None and tok.expires_at <= now:
        return None
    # A token never carries more than its user currently has. An OpenID Connect user holds no
    # scopes of its own: its only tokens with scopes are its sign-in sessions', whose scopes
    # the provider's claim gave at that sign-in (vivified.registry.identity.oidc_admins).
    oidc = user.oidc_subject is not None
    scopes = frozenset(tok.scopes) if oidc else frozenset(tok.scopes) & frozenset(user.scopes)
    return AdminPrincipal(
        user_id=user.id,
        name=user.name,
        token_id=tok.id,
        scopes=scopes,
        expires_at=tok.expires_at,
        email=user.email or "",
        oidc=oidc,
    )


async def authenticate_admin_token_id(
    sessions: async_sessionmaker[AsyncSession], token_id: str
) -> AdminPrincipal | None:
    """The admin behind the token with id `token_id` (a console session's), checked like
    `authenticate_admin`: None when it is revoked, expired or its admin disabled."""
    async with sessions() as s:
        row = (
            await s.execute(
                select(AdminToken, AdminUser)
                .join(AdminUser, AdminUser.id == AdminToken.user_id)  # type: ignore[arg-type]
                .where(AdminToken.id == token_id)
            )
        ).first()
    return None if row is None else _principal(*row)


def subject_of(user: AdminUser) -> str:
    """How audit records name an admin acted upon (the same form as an actor)."""
    return f"admin:{user.name}"


def _require_own_or_manage(by: AdminPrincipal, user_id: str, subject: str = "") -> None:
    if user_id != by.user_id and not by.has(MANAGE_SCOPE):
        raise AdminError(
            "not_own_token",
            f"acting on another admin's tokens needs the {MANAGE_SCOPE!r} scope",
            subject=subject,
        )


def _require_held(by: AdminPrincipal, scopes: Collection[str], subject: str) -> None:
    missing = sorted(set(scopes) - by.scopes)
    if missing:
        raise AdminError("scope_not_held", f"you do not hold the scopes {missing}", subject=subject)


async def issue_admin_token(
    sessions: async_sessionmaker[AsyncSession],
    user_id: str,
    *,
    by: AdminPrincipal,
    name: str = "",
    scopes: Collection[str] | None = None,
    ttl_seconds: float | None = None,
) -> IssuedAdminToken:
    """Create an API token for `user_id`, on behalf of `by`; its text is returned only here.

    `scopes` defaults to the user's. `by` must hold every scope of the token, and
    `admins:manage` when the user is not itself; the token cannot outlive `by`'s token.
    """
    _require_own_or_manage(by, user_id)
    now = time.time()
    expires_at = None if ttl_seconds is None else now + ttl_seconds
    async with sessions() as s, s.begin():
        user = await s.get(AdminUser, user_id)
        if user is None:
            raise AdminError("not_found", "no such admin user")
        subject = subject_of(user)
        wanted = check_scopes(scopes if scopes is not None else user.scopes)
        _require_held(by, wanted, subject)
        if not set(wanted) <= set(user.scopes):
            raise AdminError(
                "user_lacks_scope", "a token cannot carry scopes its user lacks", subject=subject
            )
        if by.expires_at is not None and (expires_at is None or expires_at > by.expires_at):
            raise AdminError(
                "outlives_own_token",
                "a token cannot outlive the token that mints it: give a shorter ttl_seconds",
                subject=subject,
            )
        token, digest = new_secret(ADMIN_TOKEN_PREFIX)
        row = AdminToken(
            id=uuid.uuid4().hex,
            user_id=user_id,
            name=name,
            token_hash=digest,
            scopes=wanted,
            created_at=now,
            expires_at=expires_at,
        )
        s.add(row)
    return IssuedAdminToken(token, row.id, user_id, tuple(wanted), row.expires_at, user.name)


def _user_json(user: AdminUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "scopes": list(user.scopes),
        "disabled": user.disabled,
        "created_at": user.created_at,
    }


async def create_admin_user(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    scopes: Collection[str],
    *,
    by: AdminPrincipal,
) -> dict[str, Any]:
    """A new admin user, created by `by` (needs `admins:manage` and every scope it grants)."""
    if not by.has(MANAGE_SCOPE):
        raise AdminError("missing_scope", f"creating admins needs the {MANAGE_SCOPE!r} scope")
    wanted = check_scopes(scopes)
    _require_held(by, wanted, f"admin:{name}")
    user = AdminUser(id=uuid.uuid4().hex, name=name, scopes=wanted, created_at=time.time())
    try:
        async with sessions() as s, s.begin():
            s.add(user)
    except IntegrityError as exc:
        raise AdminError("name_taken", f"an admin called {name!r} exists") from exc
    return _user_json(user)


async def list_admin_users(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    async with sessions() as s:
        rows = (await s.execute(select(AdminUser).order_by(col(AdminUser.created_at)))).scalars()
        return [_user_json(u) for u in rows.all()]


async def list_admin_tokens(
    sessions: async_sessionmaker[AsyncSession], user_id: str, *, by: AdminPrincipal
) -> list[dict[str, Any]]:
    """Token metadata only: the token itself is never shown again. Others' need admins:manage."""
    _require_own_or_manage(by, user_id)
    async with sessions() as s:
        stmt = select(AdminToken).where(col(AdminToken.user_id) == user_id)
        rows = (await s.execute(stmt.order_by(col(AdminToken.created_at)))).scalars().all()
    return [
        {
            "id": t.id,
            "name": t.name,
            "scopes": list(t.scopes),
            "created_at": t.created_at,
            "expires_at": t.expires_at,
            "revoked": t.revoked_at is not None,
        }
        for t in rows
    ]


async def revoke_admin_token(
    sessions: async_sessionmaker[AsyncSession], token_id: str, *, by: AdminPrincipal
) -> RevokedAdminToken:
    """Revoke an active token on behalf of `by`.

    Anyone may revoke its own tokens; another admin's needs `admins:manage` and every scope
    the token carries. Raises `not_found`, `not_own_token` or `scope_not_held`.
    """
    async with sessions() as s, s.begin():
        row = await s.get(AdminToken, token_id)
        if row is None or row.revoked_at is not None:
            raise AdminError("not_found", "no such active admin token")
        owner = await s.get(AdminUser, row.user_id)
        if owner is None:  # the foreign key makes this unreachable
            raise AdminError("not_found", "no such active admin token")
        subject = subject_of(owner)
        _require_own_or_manage(by, row.user_id, subject)
        if row.user_id != by.user_id:
            _require_held(by, row.scopes, subject)
        row.revoked_at = time.time()
        return RevokedAdminToken(row.id, owner.id, owner.name, tuple(row.scopes))


async def reset_bootstrap_token(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[str, list[str]]:
    """A new token for the bootstrap admin, revoking its earlier bootstrap tokens (generated
    or VIVIFIED_ADMIN_TOKEN); returns the token text (shown once) and the revoked ids.

    Recovery for whoever can reach the database (`vivified admin reset-token`): the bootstrap
    admin is created if missing, enabled, and given every scope again.
    """
    now = time.time()
    token, digest = new_secret(ADMIN_TOKEN_PREFIX)
    async with sessions() as s, s.begin():
        user, _ = await _bootstrap_user(s, now)
        user.disabled = False
        user.scopes = list(SCOPES)
        old = (
            (
                await s.execute(
                    select(AdminToken).where(
                        col(AdminToken.user_id) == user.id,
                        col(AdminToken.name).in_((BOOTSTRAP_NAME, "VIVIFIED_ADMIN_TOKEN")),
                        col(AdminToken.revoked_at).is_(None),
                    )
                )
            )
            .scalars()
            .all()
        )
        for row in old:
            row.revoked_at = now
        s.add(_full_token(user.id, BOOTSTRAP_NAME, digest, now))
    return token, [row.id for row in old]
