"""One egress CA per deployment, kept in the registry: the CA any gateway serves is the one
every egress replica signs with; its private key is encrypted at rest; rotation overlaps."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from scaleout.rig import (
    CA_KEY,
    Deployment,
    fetcher,
    start_deployment,
    stop_deployment,
    tls_through,
    within,
)
from support.egress import Upstreams, get_inside
from support.procs import CoreProcess, clean_env

from vivified.config.egress_ca import (
    KEK_FILE,
    EgressCaError,
    ca_bundle,
    ensure_deployment_ca,
    key_encryption_key,
    rotate_ca,
)
from vivified.config.settings import load_settings
from vivified.registry.store.engine import create_engine, migrate, session_factory


def ca_pem(gw: CoreProcess) -> bytes:
    r = httpx.get(gw.url + "/egress/ca.pem", trust_env=False, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-pem-file")
    return r.content


def common_name(cert: x509.Certificate) -> str:
    value = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(value, str)
    return value


def test_ca_from_either_gateway_verifies_tunnels_through_either_proxy(
    deployment: Deployment, tmp_path: Path
) -> None:
    dep = deployment
    token = fetcher(dep, "ca-check")
    pems = [ca_pem(gw) for gw in dep.gateways]
    assert pems[0] == pems[1]
    certs = x509.load_pem_x509_certificates(pems[0])
    assert len(certs) == 1
    assert common_name(certs[0]).startswith("Vivified egress CA ")
    for i, pem in enumerate(pems):
        cafile = tmp_path / f"ca-{i}.pem"
        cafile.write_bytes(pem)
        for proxy in dep.proxies:
            with tls_through(proxy, "ca-check", token, dep.up, cafile) as tls:
                assert get_inside(tls, dep.up) == 200
    # each replica materialised it where mitmproxy looks, with mitmproxy's file names
    for proxy in dep.proxies:
        confdir = proxy.data_dir / "egress-ca"
        assert (confdir / "mitmproxy-ca-cert.pem").read_bytes() == pems[0]
        assert stat.S_IMODE(os.stat(confdir / "mitmproxy-ca.pem").st_mode) == 0o600


@pytest.fixture
def own_deployment(tmp_path: Path, upstreams: Upstreams, ws_target: str) -> Iterator[Deployment]:
    dep = start_deployment(tmp_path, upstreams, ws_target, f"sqlite:///{tmp_path}/registry.db")
    yield dep
    stop_deployment(dep)


def test_rotation_serves_both_during_the_overlap_and_proxies_sign_with_the_new_ca(
    own_deployment: Deployment, tmp_path: Path
) -> None:
    dep = own_deployment
    token = fetcher(dep, "ca-rotate")
    old = x509.load_pem_x509_certificates(ca_pem(dep.gateways[0]))
    assert len(old) == 1
    r = dep.admin(1, "POST", "/admin/egress/ca/rotate")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "name", "previous"}
    assert body["name"] == f"Vivified egress CA {body['id']}"
    bundles = [x509.load_pem_x509_certificates(ca_pem(gw)) for gw in dep.gateways]
    assert bundles[0] == bundles[1]
    assert [common_name(c) for c in bundles[0]] == [body["name"], common_name(old[0])]
    new_only = tmp_path / "new.pem"
    new_only.write_bytes(ca_pem(dep.gateways[0]).split(b"-----END CERTIFICATE-----")[0])
    new_only.write_bytes(new_only.read_bytes() + b"-----END CERTIFICATE-----\n")

    def signs_with_new(proxy: CoreProcess) -> bool:
        try:
            with tls_through(proxy, "ca-rotate", token, dep.up, new_only, timeout=2) as tls:
                return get_inside(tls, dep.up) == 200
        except OSError:  # ssl.SSLCertVerificationError: still the old CA
            return False

    for proxy in dep.proxies:
        within(lambda p=proxy: signs_with_new(p), 2.0, "the proxy signs with the new CA")


def test_rotation_needs_the_egress_scope(deployment: Deployment) -> None:
    before = ca_pem(deployment.gateways[0])
    r = httpx.post(
        deployment.gateways[0].url + "/admin/egress/ca/rotate",
        headers={"Authorization": "Bearer not-an-admin-token-at-all-0123456789"},
        trust_env=False,
    )
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert ca_pem(deployment.gateways[1]) == before


def test_a_replica_with_another_ca_key_exits_with_one_clear_line(
    deployment: Deployment, tmp_path: Path
) -> None:
    env = {k: v for k, v in deployment.proxies[0].env.items() if k.startswith("VIVIFIED_")}
    env |= {"VIVIFIED_CA_KEY": "another-key-entirely-0123456789abcdefghijkl"}
    env |= {"VIVIFIED_DATA_DIR": str(tmp_path / "odd")}
    done = subprocess.run(
        [sys.executable, "-m", "vivified", "egress", "--egress-port", "0"],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr  # an operator mistake, said in one line
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("vivified egress: cannot decrypt the egress CA")
    assert "VIVIFIED_CA_KEY" in last
    assert "Traceback" not in done.stderr


# --- the store, in process --------------------------------------------------------------------


async def test_created_once_by_racing_replicas_and_encrypted_at_rest(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"VIVIFIED_DATA_DIR": str(tmp_path), "VIVIFIED_CA_KEY": CA_KEY}
    )
    engine = create_engine(settings.sqlalchemy_url)
    await migrate(engine)
    sessions = session_factory(engine)
    try:
        made = await asyncio.gather(*(ensure_deployment_ca(sessions, settings) for _ in range(4)))
        assert len({m.ca_id for m in made}) == 1
        assert len({m.cert_pem for m in made}) == 1
        async with engine.connect() as conn:
            from sqlalchemy import text

            rows = (await conn.execute(text("SELECT key_sealed FROM egress_cas"))).all()
        assert len(rows) == 1
        assert "PRIVATE KEY" not in rows[0][0]
        wrong = load_settings(
            environ={"VIVIFIED_DATA_DIR": str(tmp_path), "VIVIFIED_CA_KEY": "x" * 40}
        )
        with pytest.raises(EgressCaError) as err:
            (await ensure_deployment_ca(sessions, wrong)).private_key_pem(key_encryption_key(wrong))
        assert err.value.code == "ca_key_mismatch"
        new = await rotate_ca(sessions, settings, overlap=3600)
        assert [c.ca_id for c in await ca_bundle(sessions)] == [new.ca_id, made[0].ca_id]
    finally:
        await engine.dispose()


def test_without_a_setting_the_key_is_generated_once_mode_0600(tmp_path: Path) -> None:
    settings = load_settings(environ={"VIVIFIED_DATA_DIR": str(tmp_path)})
    first = key_encryption_key(settings)
    path = tmp_path / KEK_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert key_encryption_key(settings) == first
    from_file = load_settings(environ={"VIVIFIED_CA_KEY_FILE": str(path)})
    assert key_encryption_key(from_file) == first
