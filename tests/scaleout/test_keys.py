"""Key rotation through one gateway, or the CLI, reaches every gateway within a second: both
sign with the new key and publish the same JWKS; the retired key stays published (its tokens
keep working) until the tokens it signed expire."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import httpx
import pytest
from scaleout.rig import Deployment, fresh_token, jwt_header, within
from support.manifests import simple
from support.procs import clean_env


def jwks(url: str) -> dict[str, Any]:
    r = httpx.get(url + "/.well-known/jwks.json", trust_env=False, timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def kids(doc: dict[str, Any]) -> set[str]:
    return {k["kid"] for k in doc["keys"]}


def rotate_with_cli(dep: Deployment) -> str:
    gw = dep.gateways[0]
    env = clean_env(
        {k: v for k, v in gw.env.items() if k.startswith("VIVIFIED_")}
        | {"VIVIFIED_DATA_DIR": str(gw.data_dir / "cli")}
    )
    done = subprocess.run(
        [sys.executable, "-m", "vivified", "keys", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.getcwd(),
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"new signing key (\S+);", done.stdout)
    assert found, done.stdout
    return found.group(1)


@pytest.mark.parametrize(
    "how",
    [pytest.param("admin-api", id="admin-api"), pytest.param("cli", id="cli")],
)
def test_rotation_reaches_every_gateway_within_a_second(deployment: Deployment, how: str) -> None:
    dep = deployment
    pid = f"keyed-{how}"
    token = dep.register(simple(pid))
    old_kid = jwt_header(token)["kid"]
    a, b = dep.gateways
    assert jwks(a.url) == jwks(b.url)
    if how == "admin-api":
        r = dep.admin(0, "POST", "/admin/keys/rotate")
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"kid"}
        kid = r.json()["kid"]
    else:
        kid = rotate_with_cli(dep)
    assert kid != old_kid

    def converged() -> bool:
        signed = [jwt_header(fresh_token(gw, pid, token))["kid"] for gw in (a, b)]
        ja, jb = jwks(a.url), jwks(b.url)
        return signed == [kid, kid] and ja == jb and kid in kids(ja)

    within(converged, 1.0, "both gateways sign with the new key and publish the same JWKS")
    # the retired key stays published, and the tokens it signed keep working everywhere
    for gw in (a, b):
        assert {old_kid, kid} <= kids(jwks(gw.url))
        assert jwt_header(fresh_token(gw, pid, token))["kid"] == kid
    # a token one gateway signed with the new key verifies on the other at once
    from_b = fresh_token(b, pid, token)
    assert jwt_header(fresh_token(a, pid, from_b))["kid"] == kid


def test_keys_rotate_needs_the_keys_scope(deployment: Deployment) -> None:
    before = jwks(deployment.gateways[0].url)
    r = httpx.post(
        deployment.gateways[1].url + "/admin/keys/rotate",
        headers={"Authorization": "Bearer not-an-admin-token-at-all-0123456789"},
        trust_env=False,
    )
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert jwks(deployment.gateways[0].url) == before
