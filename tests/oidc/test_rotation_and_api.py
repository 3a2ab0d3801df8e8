"""The provider rotating its signing key between two logins, and `/admin/` with the
provider's JWT access tokens (right audience: works; any other: 401)."""

from __future__ import annotations

import httpx
import pytest
from oidc.idp import (
    API_AUDIENCE,
    OTHER_AUDIENCE,
    FixedPortGateway,
    IdentityProvider,
    add_automation_client,
    admin_api,
    browserless,
    sign_in_over_http,
)


def test_a_key_rotation_at_the_provider_does_not_break_the_next_login(
    idp: IdentityProvider, gateway: FixedPortGateway
) -> None:
    with browserless(gateway.url) as c:
        assert sign_in_over_http(c, "erin").response.status_code == 200
    old_kids = {k["kid"] for k in idp.jwks()["keys"]}
    new_kid = idp.rotate(keep_old=False)  # the old key is gone from the JWKS too
    assert new_kid not in old_kids
    assert {k["kid"] for k in idp.jwks()["keys"]} == {new_kid}
    with browserless(gateway.url) as c:
        done = sign_in_over_http(c, "erin").response
        assert done.status_code == 200, done.text
        assert "You are signed in" in done.text
        assert c.get("/console/").status_code == 200


def _call(gw: FixedPortGateway, token: str) -> httpx.Response:
    return httpx.get(
        gw.url + "/admin/audit",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    )


@pytest.mark.parametrize(
    ("client", "groups", "audience", "status", "reason"),
    [
        pytest.param(
            "robot-admin", ["vivified-admins"], API_AUDIENCE, 200, None, id="right-audience"
        ),
        pytest.param(
            "robot-admin",
            ["vivified-admins"],
            OTHER_AUDIENCE,
            401,
            "wrong_audience",
            id="other-audience",
        ),
        pytest.param(
            "robot-nobody",
            ["marketing"],
            API_AUDIENCE,
            403,
            "no_mapped_scopes",
            id="unmapped-group",
        ),
        pytest.param(
            "robot-plugins", ["no-audit"], API_AUDIENCE, 403, "no_mapped_scopes", id="no-such-group"
        ),
    ],
)
def test_provider_access_tokens_on_admin(
    idp: IdentityProvider,
    gateway: FixedPortGateway,
    client: str,
    groups: list[str],
    audience: str,
    status: int,
    reason: str | None,
) -> None:
    add_automation_client(idp, client, groups)
    r = _call(gateway, idp.client_credentials(client, audience))
    assert r.status_code == status, r.text
    if reason is None:
        assert "items" in r.json()
    else:
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["reason"] == reason


def test_an_access_token_of_a_user_disabled_in_core_is_refused(
    idp: IdentityProvider, gateway: FixedPortGateway
) -> None:
    add_automation_client(idp, "robot-disabled", ["vivified-admins"])
    token = idp.client_credentials("robot-disabled", API_AUDIENCE)
    assert _call(gateway, token).status_code == 200
    with admin_api(gateway.url) as api:
        users = api.get("/admin/oidc/users").json()["items"]
        uid = next(u["id"] for u in users if u["subject"] == "robot-disabled")
        assert api.post(f"/admin/oidc/users/{uid}/disable").status_code == 200
    r = _call(gateway, token)
    assert r.status_code == 403
    assert r.json()["reason"] == "admin_disabled"


def test_a_plugin_style_jwt_is_still_not_an_admin_token(gateway: FixedPortGateway) -> None:
    # eyJ...: a JWT from another issuer is a plugin token as before: 403 admin_required.
    fake = "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJ2aXZpZmllZC1jb3JlIn0.c2ln"
    r = _call(gateway, fake)
    assert r.status_code == 403
    assert r.json()["reason"] == "admin_required"
