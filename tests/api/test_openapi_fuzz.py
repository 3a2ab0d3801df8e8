"""Schemathesis against a real gateway, driven by the gateway's own `/openapi.json`.

Every JSON operation (admin, plugin, event and meta routes) gets a few generated requests,
valid and invalid, with the credentials it expects: an admin token, the registered plugin
`alpha`'s token (publish, heartbeat, token refresh: for itself, so the call reaches the body
checks), or a registration token (register). Two checks must hold for every answer:
`not_a_server_error` (no 5xx) and `response_schema_conformance` (status, media type and body
as the description says, problem+json included).

Bounded for CI: six examples per operation, derandomized with a fixed seed, no coverage or
stateful phase, no shrinking, no example database (see `conftest.CONFIG`).

Not fuzzed, on purpose:
- the operator lane catch-all `/{service}/{rest}`: its answers are the target plugins' own
  (nothing core's description can promise), and its refusals are covered by the lane tests;
- the console (`/console...`): HTML pages and form posts behind a session cookie and CSRF
  token, described for completeness but not a JSON API; this includes its one streaming
  export, `/console/audit/export`, whose size is the whole audit trail.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.openapi import from_dict
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import response_schema_conformance
from support.manifests import simple
from support.procs import ADMIN_TOKEN, CoreProcess, register, registration_token

from vivified.config.nats_server import ManagedNats
from vivified.config.settings import load_settings
from vivified.gateway.app import create_app
from vivified.gateway.openapi import openapi_document

PUBLISHER = "alpha"  # a plugin token's subject: publishes UserCreated
OTHER = "beta"  # the admin routes' plugin
SEED = 20261207
# Bounded: a few examples per operation, the same ones every run, no coverage or stateful
# phase (their case counts grow with the schemas), no shrinking, no example database.
CONFIG: dict[str, object] = {
    "seed": SEED,
    "generation": {
        "max-examples": 10,
        "deterministic": True,
        "no-shrink": True,
        "database": "none",
        "mode": "all",
    },
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
}


@dataclass
class Api:
    url: str
    admin: str
    registration: str
    plugin_tokens: dict[str, str] = field(default_factory=dict)

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = Path(tmp_path_factory.mktemp("api"))
    nats = ManagedNats(tmp / "nats")
    env = {
        "VIVIFIED_NATS_URL": nats.start(),
        "VIVIFIED_DATABASE_URL": f"sqlite:///{tmp}/registry.db",
    }
    gw = CoreProcess("gateway", tmp / "gw", env)
    try:
        gw.start()
        with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c:
            api = Api(gw.url, ADMIN_TOKEN, registration_token(c, uses=10_000))
            for plugin_id, changes in (
                (PUBLISHER, {"events": {"publishes": ["UserCreated"]}}),
                (OTHER, {}),
            ):
                r = register(c, simple(plugin_id, **changes), registration_token(c))
                assert r.status_code == 201, r.text
                api.plugin_tokens[plugin_id] = r.json()["token"]
        yield api
    finally:
        gw.stop()
        nats.stop()


def described_schema() -> BaseSchema:
    """The description the gateway serves (built from the same routes and settings as the
    gateway below; `test_served_description_is_the_fuzzed_one` checks that), less what the
    module docstring says is not fuzzed."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            environ={"VIVIFIED_DATA_DIR": tmp, "VIVIFIED_ADMIN_TOKEN": ADMIN_TOKEN}
        )
        document = openapi_document(create_app(settings).app.routes)
    loaded = from_dict(document, config=SchemathesisConfig.from_dict(CONFIG))
    return loaded.exclude(path_regex="^/console").exclude(path="/{service}/{rest}")


schema = described_schema()

CHECKS = [not_a_server_error, response_schema_conformance]
# Operations a plugin calls with its own token, for itself.
PLUGIN_OPERATIONS = {
    ("POST", "/events"),
    ("POST", "/plugins/{plugin_id}/heartbeat"),
    ("POST", "/plugins/{plugin_id}/token"),
}
REGISTRATION = {("POST", "/plugins/register")}
# Admin reads and config writes of a plugin: aimed at a registered one, so they get past 404.
ADMIN_ON_PLUGIN = {
    ("GET", "/plugins/{plugin_id}"),
    ("GET", "/plugins/{plugin_id}/health"),
    ("GET", "/admin/plugins/{plugin_id}/allowed-domains"),
    ("PUT", "/admin/plugins/{plugin_id}/allowed-domains"),
    ("PATCH", "/admin/plugins/{plugin_id}/allowed-domains"),
    ("GET", "/admin/plugins/{plugin_id}/limits"),
    ("PUT", "/admin/plugins/{plugin_id}/limits"),
}


def credentials(case: Any, api: Api) -> dict[str, str]:
    """The bearer the operation expects; path `plugin_id` set to a registered plugin where
    that makes the call reach its body checks."""
    key = (case.method.upper(), case.path)
    if key in PLUGIN_OPERATIONS:
        if case.path_parameters and "plugin_id" in case.path_parameters:
            case.path_parameters["plugin_id"] = PUBLISHER
        return api.bearer(api.plugin_tokens[PUBLISHER])
    if key in REGISTRATION:
        return api.bearer(api.registration)
    if key in ADMIN_ON_PLUGIN:
        case.path_parameters["plugin_id"] = OTHER
    return api.bearer(api.admin)


@schema.parametrize()
def test_api_conforms_to_its_description(case: Any, api: Api) -> None:
    response = case.call_and_validate(
        base_url=api.url, headers=credentials(case, api), checks=CHECKS, timeout=30
    )
    refreshed = (case.method.upper(), case.path) == ("POST", "/plugins/{plugin_id}/token")
    if refreshed and response.status_code == 200:  # the new token replaces the old one
        api.plugin_tokens[PUBLISHER] = response.json()["token"]


def test_served_description_is_the_fuzzed_one(api: Api) -> None:
    served = httpx.get(api.url + "/openapi.json", trust_env=False, timeout=30)
    assert served.status_code == 200, served.text
    assert served.headers["content-type"] == "application/json"
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            environ={"VIVIFIED_DATA_DIR": tmp, "VIVIFIED_ADMIN_TOKEN": ADMIN_TOKEN}
        )
        assert served.json() == openapi_document(create_app(settings).app.routes)
