"""OIDC admins in the registry (SQLite and PostgreSQL): scopes only from the sign-in, a
disabled user refused, its sessions ended."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.registry.identity.admins import (
    SCOPES,
    AdminError,
    AdminPrincipal,
    authenticate_admin_token_id,
    ensure_bootstrap_admin,
    issue_admin_token,
    list_admin_users,
)
from vivified.registry.identity.oidc_admins import (
    OidcIdentity,
    oidc_api_principal,
    open_oidc_sign_in,
    set_oidc_user_disabled,
)

ALICE = OidcIdentity("https://idp.example.com", "248289761001", "alice@example.com")
ROOT = AdminPrincipal("root", "bootstrap", "t", frozenset(SCOPES))


async def test_scopes_come_from_each_sign_in_never_from_the_user_row(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = await open_oidc_sign_in(sessions, ALICE, ["audit:read"], 3600)
    second = await open_oidc_sign_in(sessions, ALICE, ["audit:read", "plugins:manage"], 3600)
    assert first.user_id == second.user_id  # one user per iss + sub
    assert first.actor == "admin:oidc:https://idp.example.com#248289761001"
    assert first.email == "alice@example.com"
    again = await authenticate_admin_token_id(sessions, first.token_id)
    assert again is not None
    assert again.scopes == {"audit:read"}  # each session keeps its own sign-in's scopes
    assert again.oidc
    users = await list_admin_users(sessions)
    assert next(u for u in users if u["id"] == first.user_id)["scopes"] == []


async def test_no_api_token_with_scopes_can_be_minted_for_an_oidc_user(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await ensure_bootstrap_admin(sessions)
    signed_in = await open_oidc_sign_in(sessions, ALICE, ["audit:read"], 3600)
    with pytest.raises(AdminError) as refused:
        await issue_admin_token(sessions, signed_in.user_id, by=ROOT, scopes=["audit:read"])
    assert refused.value.code == "user_lacks_scope"


async def test_a_disabled_oidc_user_is_refused_and_its_sessions_end(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    signed_in = await open_oidc_sign_in(sessions, ALICE, ["audit:read"], 3600)
    body = await set_oidc_user_disabled(sessions, signed_in.user_id, True, by=ROOT)
    assert body["disabled"] is True
    assert await authenticate_admin_token_id(sessions, signed_in.token_id) is None
    for attempt in (
        open_oidc_sign_in(sessions, ALICE, ["audit:read"], 3600),
        oidc_api_principal(sessions, ALICE, ["audit:read"], 0),
    ):
        with pytest.raises(AdminError) as refused:
            await attempt
        assert refused.value.code == "admin_disabled"
    await set_oidc_user_disabled(sessions, signed_in.user_id, False, by=ROOT)
    assert (await open_oidc_sign_in(sessions, ALICE, ["audit:read"], 3600)).scopes == {"audit:read"}


async def test_disabling_needs_admins_manage(sessions: async_sessionmaker[AsyncSession]) -> None:
    signed_in = await open_oidc_sign_in(sessions, ALICE, ["audit:read"], 3600)
    with pytest.raises(AdminError) as refused:
        await set_oidc_user_disabled(sessions, signed_in.user_id, True, by=signed_in)
    assert refused.value.code == "missing_scope"
