"""The egress proxy's certificate authority: created once in the data dir, key never leaves it.

The CA is named for the deployment (`CN=Vivified egress CA <id>, O=Vivified`, the id a short
random one), so that it is told apart from any other proxy's CA in a trust store. The files keep
mitmproxy's names (`mitmproxy-ca-cert.pem`, ...), which mitmproxy's `confdir` expects.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

CA_DIRNAME = "egress-ca"
CA_BASENAME = "mitmproxy"  # mitmproxy's confdir naming: <basename>-ca.pem holds key + cert
PUBLIC_CERT = f"{CA_BASENAME}-ca-cert.pem"
PRIVATE_FILES = (f"{CA_BASENAME}-ca.pem", f"{CA_BASENAME}-ca.p12")
KEY_SIZE = 2048
CA_ORGANIZATION = "Vivified"
CA_NAME_PREFIX = "Vivified egress CA"


def new_ca_name() -> str:
    """`Vivified egress CA 3f9c2a71`: the common name of a new deployment's CA."""
    return f"{CA_NAME_PREFIX} {secrets.token_hex(4)}"


def ca_dir(data_dir: Path) -> Path:
    """Where the CA lives; the egress launcher points mitmproxy's `confdir` here."""
    return data_dir / CA_DIRNAME


def _lock_down(directory: Path) -> None:
    os.chmod(directory, 0o700)
    for name in PRIVATE_FILES:
        path = directory / name
        if path.exists():
            os.chmod(path, 0o600)


def ensure_ca(data_dir: Path) -> Path:
    """Create the CA under `data_dir/egress-ca/` if missing and return the public cert's path.

    Race-safe: the CA is built in a private temporary directory and renamed into place; when two
    processes race, the loser discards its copy and both use the winner's."""
    from mitmproxy.certs import CertStore

    target = ca_dir(data_dir)
    cert = target / PUBLIC_CERT
    if cert.exists():
        _lock_down(target)
        return cert
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".egress-ca-", dir=data_dir))
    try:
        CertStore.create_store(
            tmp, CA_BASENAME, KEY_SIZE, organization=CA_ORGANIZATION, cn=new_ca_name()
        )
        CertStore.from_store(tmp, CA_BASENAME, KEY_SIZE)  # loads what was written
        _lock_down(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not cert.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return cert
