"""OIDC misconfiguration stops the gateway at start with one line, never at the first login;
the `[oidc_scopes]` table loads from the TOML file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from oidc.idp import IdentityProvider, free_port
from support.procs import clean_env

from vivified.config.settings import SettingsError, load_settings

BASE = {
    "VIVIFIED_OIDC_CLIENT_ID": "vivified",
    "VIVIFIED_OIDC_CLIENT_SECRET": "secret-0123456789",
    "VIVIFIED_PUBLIC_URL": "http://127.0.0.1:8000",
    "VIVIFIED_OIDC_SCOPES": json.dumps({"ops": ["audit:read"]}),
}


@pytest.fixture
def discovery_without_jwks() -> Iterator[str]:
    """A real HTTP server whose discovery document lacks `jwks_uri`."""
    issuer = ""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "issuer": issuer,
                    "authorization_endpoint": issuer + "/auth",
                    "token_endpoint": issuer + "/token",
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


def _gateway_exit(tmp_path: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    run = subprocess.run(
        [sys.executable, "-m", "vivified", "gateway", "--gateway-port", "0"],
        env=clean_env({"VIVIFIED_DATA_DIR": str(tmp_path), "VIVIFIED_LOG_LEVEL": "warning", **env}),
        capture_output=True,
        timeout=60,
    )
    lines = [ln for ln in run.stderr.decode().splitlines() if ln.strip()]
    return run.returncode, lines


def test_an_unreachable_issuer_stops_the_gateway_with_one_line(tmp_path: Path) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    code, lines = _gateway_exit(tmp_path, {**BASE, "VIVIFIED_OIDC_ISSUER": issuer})
    assert code == 1
    assert len(lines) == 1, lines
    assert "unreachable" in lines[0]
    assert issuer in lines[0]


def test_discovery_without_jwks_uri_stops_the_gateway_with_one_line(
    tmp_path: Path, discovery_without_jwks: str
) -> None:
    code, lines = _gateway_exit(tmp_path, {**BASE, "VIVIFIED_OIDC_ISSUER": discovery_without_jwks})
    assert code == 1
    assert len(lines) == 1, lines
    assert "'jwks_uri'" in lines[0]


def test_an_issuer_that_is_not_the_discovered_one_stops_the_gateway(
    tmp_path: Path, idp: IdentityProvider
) -> None:
    other_name = idp.issuer.replace("localhost", "127.0.0.1")  # same server, another name
    code, lines = _gateway_exit(tmp_path, {**BASE, "VIVIFIED_OIDC_ISSUER": other_name})
    assert code == 1
    assert len(lines) == 1, lines
    assert "must be exactly the provider's issuer" in lines[0]


def test_a_mapping_to_an_unknown_scope_stops_the_gateway_with_one_line(tmp_path: Path) -> None:
    toml = tmp_path / "vivified.toml"
    toml.write_text('[oidc_scopes]\n"ops team" = ["audit:read", "root:everything"]\n')
    env = {**BASE, "VIVIFIED_OIDC_ISSUER": "https://idp.example.com", "VIVIFIED_CONFIG": str(toml)}
    del env["VIVIFIED_OIDC_SCOPES"]
    code, lines = _gateway_exit(tmp_path, env)
    assert code == 2
    assert len(lines) == 1, lines
    assert "root:everything" in lines[0]
    assert "unknown scopes" in lines[0]


def test_the_scope_table_loads_from_the_toml_file(tmp_path: Path) -> None:
    toml = tmp_path / "vivified.toml"
    toml.write_text(
        'oidc_issuer = "https://idp.example.com"\n'
        'oidc_client_id = "vivified"\n'
        'public_url = "https://core.example.com"\n'
        "[oidc_scopes]\n"
        '"ops team" = ["audit:read", "plugins:manage"]\n'
        'auditors = ["audit:read"]\n'
    )
    s = load_settings(environ={}, config_file=toml)
    assert dict(s.oidc_scopes) == {
        "auditors": ("audit:read",),
        "ops team": ("audit:read", "plugins:manage"),
    }


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        pytest.param({"VIVIFIED_OIDC_CLIENT_ID": ""}, "VIVIFIED_OIDC_CLIENT_ID", id="no-client-id"),
        pytest.param({"VIVIFIED_PUBLIC_URL": ""}, "VIVIFIED_PUBLIC_URL", id="no-public-url"),
        pytest.param({"VIVIFIED_OIDC_SCOPES": "{}"}, "nobody could sign in", id="empty-table"),
        pytest.param({"VIVIFIED_OIDC_SCOPES": "[1]"}, "must be a table", id="table-not-object"),
        pytest.param(
            {"VIVIFIED_OIDC_ISSUER": "http://idp.example.com"}, "https", id="plain-http-issuer"
        ),
        pytest.param(
            {"VIVIFIED_OIDC_CLIENT_SECRET_FILE": "/tmp/x"}, "not both", id="secret-and-file"
        ),
    ],
)
def test_oidc_settings_problems(env: dict[str, str], needle: str) -> None:
    values = {**BASE, "VIVIFIED_OIDC_ISSUER": "https://idp.example.com", **env}
    with pytest.raises(SettingsError) as refused:
        load_settings(environ={k: v for k, v in values.items() if v})
    assert needle in str(refused.value)
