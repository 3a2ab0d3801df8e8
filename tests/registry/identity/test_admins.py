"""Admin power rules in the registry, on SQLite and PostgreSQL: a refusal writes nothing."""

from __future__ import annotations

from collections.abc import Collection

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.registry.identity import admins

Sessions = async_sessionmaker[AsyncSession]
MANAGE, EGRESS, AUDIT = "admins:manage", "egress:manage", "audit:read"


async def _admin(
    sessions: Sessions, root: admins.AdminPrincipal, name: str, scopes: Collection[str]
) -> admins.AdminPrincipal:
    user = await admins.create_admin_user(sessions, name, scopes, by=root)
    issued = await admins.issue_admin_token(sessions, user["id"], by=root)
    principal = await admins.authenticate_admin(sessions, issued.token)
    assert principal is not None
    return principal


async def _root(sessions: Sessions) -> admins.AdminPrincipal:
    token = await admins.ensure_bootstrap_admin(sessions)
    assert token is not None
    root = await admins.authenticate_admin(sessions, token)
    assert root is not None
    return root


async def _active(sessions: Sessions, by: admins.AdminPrincipal, user_id: str) -> list[str]:
    tokens = await admins.list_admin_tokens(sessions, user_id, by=by)
    return [t["id"] for t in tokens if not t["revoked"]]


@pytest.mark.parametrize(
    ("caller_scopes", "whose", "requested", "code"),
    [
        pytest.param([MANAGE], "root", None, "scope_not_held", id="manage-only-for-root"),
        pytest.param([MANAGE], "self", [EGRESS], "scope_not_held", id="manage-only-self-beyond"),
        pytest.param([EGRESS], "root", [EGRESS], "not_own_token", id="no-manage-for-root"),
    ],
)
async def test_a_refused_mint_writes_nothing(
    sessions: Sessions,
    caller_scopes: list[str],
    whose: str,
    requested: list[str] | None,
    code: str,
) -> None:
    root = await _root(sessions)
    caller = await _admin(sessions, root, "caller", caller_scopes)
    owner = root if whose == "root" else caller
    before = await _active(sessions, root, owner.user_id)
    with pytest.raises(admins.AdminError) as err:
        await admins.issue_admin_token(sessions, owner.user_id, by=caller, scopes=requested)
    assert err.value.code == code
    assert await _active(sessions, root, owner.user_id) == before


@pytest.mark.parametrize(
    ("caller_scopes", "token_scopes", "code"),
    [
        pytest.param([MANAGE, EGRESS], [EGRESS, AUDIT], "scope_not_held", id="lacks-one-scope"),
        pytest.param([EGRESS, AUDIT], [EGRESS], "not_own_token", id="no-manage"),
        pytest.param([MANAGE, EGRESS, AUDIT], [EGRESS, AUDIT], "", id="holds-every-scope"),
    ],
)
async def test_revoking_another_admins_token(
    sessions: Sessions, caller_scopes: list[str], token_scopes: list[str], code: str
) -> None:
    root = await _root(sessions)
    caller = await _admin(sessions, root, "caller", caller_scopes)
    victim = await _admin(sessions, root, "victim", [MANAGE, EGRESS, AUDIT])
    issued = await admins.issue_admin_token(sessions, victim.user_id, by=root, scopes=token_scopes)
    if code:
        with pytest.raises(admins.AdminError) as err:
            await admins.revoke_admin_token(sessions, issued.token_id, by=caller)
        assert (err.value.code, err.value.subject) == (code, "admin:victim")
        assert await admins.authenticate_admin(sessions, issued.token) is not None
        return
    revoked = await admins.revoke_admin_token(sessions, issued.token_id, by=caller)
    assert (revoked.user_id, revoked.user_name) == (victim.user_id, "victim")
    assert revoked.scopes == tuple(sorted(token_scopes))
    assert await admins.authenticate_admin(sessions, issued.token) is None
    with pytest.raises(admins.AdminError) as err:
        await admins.revoke_admin_token(sessions, issued.token_id, by=caller)
    assert err.value.code == "not_found"
