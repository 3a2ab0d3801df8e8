"""OpenID Connect admins: an admin user row per provider identity (`iss` + `sub`).

An OIDC user never holds scopes of its own (its `scopes` column stays empty). Its scopes are
derived from the provider's claim at every sign-in and live only on that sign-in's session
token (an `AdminToken` whose secret is thrown away, so it can never be presented as a
Bearer token; the console session refers to it by id), or, for the provider's access
tokens on `/admin/`, only for that one request. An admin with `admins:manage` can disable
the user in core: it is then refused whatever the provider says.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.registry.identity.admins import (
    ADMIN_TOKEN_PREFIX,
    MANAGE_SCOPE,
    AdminError,
    AdminPrincipal,
    check_scopes,
    subject_of,
)
from vivified.registry.identity.secrets import new_secret
from vivified.registry.store.tables import AdminToken, AdminUser

SIGN_IN_TOKEN_NAME = "oidc sign-in"  # noqa: S105 (a label, not a secret)


@dataclass(frozen=True)
class OidcIdentity:
    """Who the provider vouched for: its stable subject, and an email for display."""

    issuer: str
    subject: str
    email: str = ""

    @property
    def user_name(self) -> str:
        """The admin user's name, and so the audit actor `admin:oidc:<iss>#<sub>`."""
        return f"oidc:{self.issuer}#{self.subject}"


async def _user(s: AsyncSession, who: OidcIdentity) -> AdminUser | None:
    stmt = select(AdminUser).where(
        col(AdminUser.oidc_issuer) == who.issuer, col(AdminUser.oidc_subject) == who.subject
    )
    return (await s.execute(stmt)).scalar_one_or_none()


async def _user_for(
    sessions: async_sessionmaker[AsyncSession], who: OidcIdentity, *, signed_in: bool
) -> AdminUser:
    """The user row of `who`, created on first sight; its email refreshed."""
    now = time.time()
    for _attempt in range(2):  # a concurrent first sign-in may create the row first
        try:
            async with sessions() as s, s.begin():
                user = await _user(s, who)
                if user is None:
                    user = AdminUser(
                        id=uuid.uuid4().hex,
                        name=who.user_name,
                        scopes=[],
                        created_at=now,
                        oidc_issuer=who.issuer,
                        oidc_subject=who.subject,
                    )
                    s.add(user)
                if who.email and user.email != who.email:
                    user.email = who.email
                if signed_in:
                    user.last_sign_in_at = now
                return user
        except IntegrityError:
            continue
    raise AdminError("name_taken", "the OIDC user could not be recorded; try again")


def _refuse_disabled(user: AdminUser) -> None:
    if user.disabled:
        raise AdminError(
            "admin_disabled",
            "this account is disabled in Vivified; ask an administrator",
            subject=subject_of(user),
        )


async def open_oidc_sign_in(
    sessions: async_sessionmaker[AsyncSession],
    who: OidcIdentity,
    scopes: Collection[str],
    ttl_seconds: float,
) -> AdminPrincipal:
    """A sign-in of `who` with the scopes its claim maps to now: a session token (never shown
    to anyone) the console session refers to. AdminError `admin_disabled` when disabled."""
    wanted = check_scopes(scopes)
    user = await _user_for(sessions, who, signed_in=True)
    _refuse_disabled(user)
    now = time.time()
    _unusable, digest = new_secret(ADMIN_TOKEN_PREFIX)  # the secret is thrown away
    tok = AdminToken(
        id=uuid.uuid4().hex,
        user_id=user.id,
        name=SIGN_IN_TOKEN_NAME,
        token_hash=digest,
        scopes=wanted,
        created_at=now,
        expires_at=now + ttl_seconds,
    )
    async with sessions() as s, s.begin():
        s.add(tok)
    return AdminPrincipal(
        user.id, user.name, tok.id, frozenset(wanted), tok.expires_at, who.email, True
    )


async def oidc_api_principal(
    sessions: async_sessionmaker[AsyncSession],
    who: OidcIdentity,
    scopes: Collection[str],
    expires_at: float,
) -> AdminPrincipal:
    """The principal of one `/admin/` request made with a provider access token (no session,
    no stored token). AdminError `admin_disabled` when the user is disabled in core."""
    wanted = check_scopes(scopes)
    user = await _user_for(sessions, who, signed_in=False)
    _refuse_disabled(user)
    return AdminPrincipal(user.id, user.name, "", frozenset(wanted), expires_at, who.email, True)


def _oidc_json(user: AdminUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "issuer": user.oidc_issuer,
        "subject": user.oidc_subject,
        "email": user.email,
        "disabled": user.disabled,
        "created_at": user.created_at,
        "last_sign_in_at": user.last_sign_in_at,
    }


async def list_oidc_users(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    async with sessions() as s:
        stmt = select(AdminUser).where(col(AdminUser.oidc_subject).is_not(None))
        rows = (await s.execute(stmt.order_by(col(AdminUser.created_at)))).scalars().all()
    return [_oidc_json(u) for u in rows]


async def set_oidc_user_disabled(
    sessions: async_sessionmaker[AsyncSession], user_id: str, disabled: bool, *, by: AdminPrincipal
) -> dict[str, Any]:
    """Disable (or enable again) an OIDC user in core, on behalf of `by` (`admins:manage`).
    Disabling also revokes its sign-in sessions' tokens: its console sessions end at once."""
    if not by.has(MANAGE_SCOPE):
        raise AdminError("missing_scope", f"this needs the {MANAGE_SCOPE!r} scope")
    now = time.time()
    async with sessions() as s, s.begin():
        user = await s.get(AdminUser, user_id)
        if user is None or user.oidc_subject is None:
            raise AdminError("not_found", "no such OIDC user")
        user.disabled = disabled
        if disabled:
            await s.execute(
                update(AdminToken)
                .where(col(AdminToken.user_id) == user_id, col(AdminToken.revoked_at).is_(None))
                .values(revoked_at=now)
            )
    return _oidc_json(user)
