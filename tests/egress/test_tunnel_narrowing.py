"""Open CONNECT tunnels end when the egress policy stops allowing their destination.

A real `vivified egress` (periodic reload 0.5 s, no NATS): a tunnel accepted for a domain is
closed by the proxy, with one `tunnel` deny record carrying the policy's reason, once the
plugin's allowlist or the egress document no longer allows its host and port, exactly as a
revocation closes it; unrelated changes leave it open and working.

Every change is written together with a marker (`core.example.com` blocked) in one commit, so
a CONNECT refused as `blocked_domain` for the marker proves the new snapshot is live; the
tunnels are reviewed at the swap itself, before any flow sees the new snapshot.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.egress import (
    PLUGINS,
    Egress,
    Upstreams,
    closed_by_peer,
    connect,
    egress_document,
    read_response,
    start_egress,
)
from support.waiting import eventually

MARKER = "core.example.com"
CLOSE_BOUND = 2.0  # seconds: a reload every 0.5 s, as the revocation test allows


@pytest.fixture(scope="module")
def eg(tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams) -> Iterator[Egress]:
    # passthrough tunnels would otherwise end on their own after the helper's 2 s
    env = {"VIVIFIED_EGRESS_TUNNEL_MAX_SECONDS": "60"}
    egress = start_egress(Path(tmp_path_factory.mktemp("narrowing")), upstreams, env=env)
    yield egress
    egress.proc.stop()


@dataclass(frozen=True)
class Change:
    """One admin change: to the egress document and/or to one plugin's registration."""

    doc: Callable[[Egress], dict[str, Any]] | None = None
    plugin: tuple[str, dict[str, Any]] | None = None


def doc_with(**changes: Callable[[Egress, dict[str, Any]], Any]) -> Callable[[Egress], Any]:
    """The baseline egress document with each key replaced by `f(eg, baseline)`."""

    def build(eg: Egress) -> dict[str, Any]:
        base = baseline_doc(eg)
        return {**base, **{k: f(eg, base) for k, f in changes.items()}}

    return build


def baseline_doc(eg: Egress) -> dict[str, Any]:
    return egress_document(eg.up, eg.gateway_port)


def marker_state(eg: Egress) -> str | None:
    """The refusal code of a CONNECT to the marker (None: not refused)."""
    _status, headers, _body, sock = connect(eg, f"{MARKER}:{eg.up.https_port}")
    sock.close()
    return headers.get("x-vivified-egress-error")


def commit(eg: Egress, change: Change) -> None:
    """Commit `change` and the marker in one transaction, as an admin's change is one."""
    doc = baseline_doc(eg) if change.doc is None else change.doc(eg)
    doc = {**doc, "blocked_domains": [*doc["blocked_domains"], MARKER]}
    eg.update(doc=doc, plugin=change.plugin)


def apply(eg: Egress, change: Change) -> None:
    """Commit `change` and wait until the proxy runs on it (the marker is refused)."""
    commit(eg, change)
    eventually(lambda: marker_state(eg) == "blocked_domain", 5, "the change applied")


@pytest.fixture(autouse=True)
def _restore(eg: Egress) -> Iterator[None]:
    yield
    for pid in ("alpha", "beta"):
        spec = PLUGINS[pid]
        fields = {"egress_domains": spec.domains, "egress_mode": spec.mode}
        eg.update(plugin=(pid, fields))
    eg.update(doc=baseline_doc(eg))
    eventually(lambda: marker_state(eg) is None, 5, "the baseline restored")


def open_tunnel(eg: Egress, plugin: str, host: str) -> ssl.SSLSocket:
    """A CONNECT tunnel to `host` (TLS inside: core's CA, or the upstream's for passthrough)."""
    status, headers, body, sock = connect(eg, f"{host}:{eg.up.https_port}", plugin=plugin)
    assert status == 200, (status, headers, body)
    passthrough = host in baseline_doc(eg)["passthrough_domains"]
    ctx = ssl.create_default_context(cafile=str(eg.up.ca_file)) if passthrough else None
    return (ctx or eg.ssl_context()).wrap_socket(sock, server_hostname=host)


def get_inside(tls: ssl.SSLSocket, eg: Egress, host: str) -> tuple[int, bytes]:
    tls.sendall(f"GET /inside HTTP/1.1\r\nHost: {host}:{eg.up.https_port}\r\n\r\n".encode())
    status, _headers, body = read_response(tls)
    return status, body


def last_record(eg: Egress) -> int:
    return max((r.id for r in eg.audit_rows()), default=0)


def closing_records(eg: Egress, after: int, plugin: str, host: str) -> list[Any]:
    """The records of tunnels the proxy closed, written after record `after`."""
    return [
        r
        for r in eg.audit_rows()
        if r.id > after
        and r.actor == plugin
        and r.action == "tunnel"
        and r.decision == "deny"
        and r.target == f"{host}:{eg.up.https_port}"
        and r.detail.get("closed") is True
    ]


NARROWING = [
    pytest.param(
        "alpha",
        "api.example.com",
        Change(plugin=("alpha", {"egress_domains": ["files.example.org"]})),
        "host_not_allowed",
        id="allowlist-narrowed",
    ),
    pytest.param(
        "alpha",
        "pass.example.org",
        Change(plugin=("alpha", {"egress_domains": ["api.example.com"]})),
        "host_not_allowed",
        id="allowlist-narrowed-passthrough",
    ),
    pytest.param(
        "alpha",
        "api.example.com",
        Change(
            doc=doc_with(blocked_domains=lambda eg, d: [*d["blocked_domains"], "api.example.com"])
        ),
        "blocked_domain",
        id="domain-blocked",
    ),
    pytest.param(
        "alpha",
        "api.example.com",
        Change(doc=doc_with(allowed_ports=lambda eg, d: [80, 443, eg.up.http_port])),
        "port_not_allowed",
        id="port-no-longer-allowed",
    ),
    pytest.param(
        "alpha",
        "api.example.com",
        Change(doc=doc_with(enabled=lambda eg, d: False)),
        "egress_disabled",
        id="kill-switch",
    ),
]


@pytest.mark.parametrize(("plugin", "host", "change", "reason"), NARROWING)
def test_narrowing_closes_the_open_tunnel(
    eg: Egress, plugin: str, host: str, change: Change, reason: str
) -> None:
    before = last_record(eg)
    tls = open_tunnel(eg, plugin, host)
    try:
        assert get_inside(tls, eg, host)[0] == 200
        assert closing_records(eg, before, plugin, host) == []
        commit(eg, change)
        eventually(lambda: closed_by_peer(tls), CLOSE_BOUND, "the proxy closed the tunnel")
    finally:
        tls.close()
    records = eventually(lambda: closing_records(eg, before, plugin, host), 5, "the closing record")
    assert len(records) == 1, records
    assert records[0].reason == reason
    assert records[0].detail["host"] == host


UNRELATED = [
    pytest.param(
        "alpha",
        Change(plugin=("alpha", {"egress_domains": [*PLUGINS["alpha"].domains, "x.example.net"]})),
        id="another-domain-added",
    ),
    pytest.param(
        "alpha",
        Change(
            doc=doc_with(blocked_domains=lambda eg, d: [*d["blocked_domains"], "files.example.org"])
        ),
        id="another-domain-blocked",
    ),
    pytest.param(
        "alpha",
        Change(doc=doc_with(allowed_ports=lambda eg, d: [*d["allowed_ports"], 8443])),
        id="another-port-allowed",
    ),
    pytest.param(  # report mode: the CONNECT would still be let through, audited as would-deny
        "beta",
        Change(plugin=("beta", {"egress_domains": ["files.example.org"]})),
        id="report-mode-allowlist-narrowed",
    ),
]


@pytest.mark.parametrize(("plugin", "change"), UNRELATED)
def test_a_change_that_still_allows_the_destination_leaves_the_tunnel_open(
    eg: Egress, plugin: str, change: Change
) -> None:
    host = "api.example.com"
    before = last_record(eg)
    tls = open_tunnel(eg, plugin, host)
    try:
        assert get_inside(tls, eg, host)[0] == 200
        apply(eg, change)  # the tunnels were reviewed against it before the marker was refused
        assert not closed_by_peer(tls)
        status, body = get_inside(tls, eg, host)
        assert status == 200, body
        assert json.loads(body)["path"] == "/inside"
    finally:
        tls.close()
    assert closing_records(eg, before, plugin, host) == []
