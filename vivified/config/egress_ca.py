"""The egress proxy's certificate authority: one per deployment, kept in the registry.

The CA is named for the deployment (`CN=Vivified egress CA <id>, O=Vivified`, the id a short
random one), so that it is told apart from any other proxy's CA in a trust store. It is made
once, race-safely (the row of generation 1 is unique: a creator that loses the race reads the
winner's), by the first gateway or egress replica that needs it. Its private key is sealed
with AES-GCM under the deployment's key-encryption key (`VIVIFIED_CA_KEY` or
`VIVIFIED_CA_KEY_FILE`; without either, one generated into `<data dir>/ca-kek`, mode 0600,
which only processes sharing that data dir can use).

Every egress replica materialises the signing CA into its mitmproxy `confdir` (the files keep
mitmproxy's names, `mitmproxy-ca.pem`, ...), every gateway serves the published ones at
`GET /egress/ca.pem`. A rotation adds the next generation, which signs once the replicas
reload; the older one stays in the served bundle for `ROTATION_OVERLAP` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vivified.config.operator_errors import OperatorError
from vivified.config.setting_combinations import MIN_CA_KEY_LENGTH
from vivified.config.settings import Settings
from vivified.registry.store.tables import EgressCA

log = logging.getLogger(__name__)

CA_DIRNAME = "egress-ca"
CA_BASENAME = "mitmproxy"  # mitmproxy's confdir naming: <basename>-ca.pem holds key + cert
PUBLIC_CERT = f"{CA_BASENAME}-ca-cert.pem"
PRIVATE_FILES = (f"{CA_BASENAME}-ca.pem", f"{CA_BASENAME}-ca.p12")
KEY_SIZE = 2048
CA_ORGANIZATION = "Vivified"
CA_NAME_PREFIX = "Vivified egress CA"
KEK_FILE = "ca-kek"
ROTATION_OVERLAP = 7 * 86400.0  # seconds a replaced CA stays in the served bundle
_KEK_INFO = b"vivified egress CA key-encryption key v1"
_SEALED_PREFIX = "v1."
_KEK_SETTINGS = "VIVIFIED_CA_KEY (or VIVIFIED_CA_KEY_FILE)"


class EgressCaError(OperatorError):
    """The egress CA cannot be used as configured: a stable `code` and what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_ca_name() -> str:
    """`Vivified egress CA 3f9c2a71`: the common name of a new deployment's CA."""
    return f"{CA_NAME_PREFIX} {secrets.token_hex(4)}"


def ca_dir(data_dir: Path) -> Path:
    """Where an egress replica keeps the signing CA: mitmproxy's `confdir`."""
    return data_dir / CA_DIRNAME


# --- the key-encryption key -----------------------------------------------------------------


def _generated_secret(data_dir: Path) -> str:
    """`<data dir>/ca-kek`, made on first use (mode 0600; racing makers keep the first)."""
    path = data_dir / KEK_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ca-kek-", dir=data_dir)  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
            try:
                os.link(tmp, path)  # atomic, and never over another's
                log.warning(
                    "generated the egress CA's key-encryption key in %s (mode 0600); replicas "
                    "that do not share this data dir need the same key: set %s on every one",
                    path,
                    _KEK_SETTINGS,
                )
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


def _kek_secret(settings: Settings) -> str:
    if settings.ca_key:
        return settings.ca_key
    if not settings.ca_key_file:
        return _generated_secret(settings.data_dir)
    path = Path(settings.ca_key_file).expanduser()
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise EgressCaError(
            "ca_key_unreadable", f"cannot read VIVIFIED_CA_KEY_FILE {path}: {exc.strerror}"
        ) from exc
    if len(secret) < MIN_CA_KEY_LENGTH:
        raise EgressCaError(
            "ca_key_too_short",
            f"VIVIFIED_CA_KEY_FILE {path} must hold at least {MIN_CA_KEY_LENGTH} characters",
        )
    return secret


def key_encryption_key(settings: Settings) -> bytes:
    """The AES-256 key sealing the CA's private key, derived (HKDF-SHA256) from the setting."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEK_INFO)
    return hkdf.derive(_kek_secret(settings).encode())


def _seal(kek: bytes, ca_id: str, plain: bytes) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(kek).encrypt(nonce, plain, ca_id.encode())  # bound to its row
    return _SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()


def _unseal(kek: bytes, ca_id: str, name: str, sealed: str) -> bytes:
    try:
        if not sealed.startswith(_SEALED_PREFIX):
            raise ValueError(sealed[:3])
        raw = base64.b64decode(sealed[len(_SEALED_PREFIX) :], validate=True)
        return AESGCM(kek).decrypt(raw[:12], raw[12:], ca_id.encode())
    except (InvalidTag, ValueError, binascii.Error) as exc:
        raise EgressCaError(
            "ca_key_mismatch",
            f"cannot decrypt the egress CA {name!r} kept in the registry with this process's "
            f"key-encryption key: give every gateway and egress replica the same {_KEK_SETTINGS}",
        ) from exc


# --- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentCA:
    """One generation of the deployment's CA, as read from the registry."""

    generation: int
    ca_id: str
    name: str
    cert_pem: str
    key_sealed: str
    publish_until: float | None

    @classmethod
    def of(cls, row: EgressCA) -> DeploymentCA:
        return cls(
            row.generation, row.ca_id, row.name, row.cert_pem, row.key_sealed, row.publish_until
        )

    def private_key_pem(self, kek: bytes) -> bytes:
        """The private key (PKCS#8 PEM); EgressCaError when `kek` is not the deployment's."""
        return _unseal(kek, self.ca_id, self.name, self.key_sealed)


def _new_row(generation: int, kek: bytes) -> EgressCA:
    from mitmproxy.certs import create_ca

    name = new_ca_name()
    key, cert = create_ca(organization=CA_ORGANIZATION, cn=name, key_size=KEY_SIZE)
    return _row(generation, name, key, cert, kek)


def _row(
    generation: int, name: str, key: rsa.RSAPrivateKey, cert: x509.Certificate, kek: bytes
) -> EgressCA:
    ca_id = name.removeprefix(CA_NAME_PREFIX).strip()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return EgressCA(
        generation=generation,
        ca_id=ca_id,
        name=name,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_sealed=_seal(kek, ca_id, pem),
        created_at=time.time(),
    )


def _legacy_row(data_dir: Path, kek: bytes) -> EgressCA | None:
    """The CA an earlier version kept in this data dir, so that plugins trusting it keep
    working after the upgrade (adopted once, when the registry has none)."""
    path = ca_dir(data_dir) / PRIVATE_FILES[0]
    try:
        raw = path.read_bytes()
        key = serialization.load_pem_private_key(raw, None)
        cert = x509.load_pem_x509_certificates(raw)[0]
    except (OSError, ValueError, IndexError):
        return None
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(names[0].value) if names else ""
    if not isinstance(key, rsa.RSAPrivateKey) or not name.startswith(CA_NAME_PREFIX + " "):
        return None
    log.warning("adopting the egress CA %r of %s as the deployment's CA", name, path)
    return _row(1, name, key, cert, kek)


async def signing_ca(sessions: async_sessionmaker[AsyncSession]) -> DeploymentCA | None:
    """The newest generation: the one egress replicas sign with."""
    async with sessions() as s:
        stmt = select(EgressCA).order_by(col(EgressCA.generation).desc()).limit(1)
        row = (await s.execute(stmt)).scalars().first()
    return None if row is None else DeploymentCA.of(row)


async def ca_bundle(sessions: async_sessionmaker[AsyncSession]) -> list[DeploymentCA]:
    """Every published generation, the signer first."""
    now = time.time()
    async with sessions() as s:
        stmt = select(EgressCA).order_by(col(EgressCA.generation).desc())
        rows = (await s.execute(stmt)).scalars().all()
    return [DeploymentCA.of(r) for r in rows if r.publish_until is None or r.publish_until > now]


async def ensure_deployment_ca(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> DeploymentCA:
    """The signing CA, made now when the registry has none yet (race-safe)."""
    found = await signing_ca(sessions)
    if found is not None:
        return found
    kek = key_encryption_key(settings)
    row = _legacy_row(settings.data_dir, kek) or await asyncio.to_thread(_new_row, 1, kek)
    try:
        async with sessions() as s, s.begin():
            s.add(row)
    except IntegrityError:
        pass  # another replica made it at the same moment: theirs it is
    found = await signing_ca(sessions)
    assert found is not None
    return found


async def rotate_ca(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    overlap: float = ROTATION_OVERLAP,
) -> DeploymentCA:
    """Add a new generation (the signer once replicas reload); the older ones stay published
    for `overlap` seconds. Two rotations at one moment make one new CA."""
    current = await ensure_deployment_ca(sessions, settings)
    kek = key_encryption_key(settings)
    row = await asyncio.to_thread(_new_row, current.generation + 1, kek)
    now = time.time()
    try:
        async with sessions() as s, s.begin():
            stmt = select(EgressCA).where(col(EgressCA.retired_at).is_(None))
            for old in (await s.execute(stmt)).scalars().all():
                old.retired_at, old.publish_until = now, now + overlap
            s.add(row)
    except IntegrityError:
        pass  # a concurrent rotation won; its CA is the new one
    found = await signing_ca(sessions)
    assert found is not None
    return found


# --- an egress replica's confdir --------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def materialise(ca: DeploymentCA, kek: bytes, confdir: Path) -> bool:
    """Write `ca` into mitmproxy's `confdir` (its file names; private files 0600, the
    directory 0700); False when it was there already. EgressCaError on a foreign `kek`."""
    from mitmproxy.certs import DEFAULT_DHPARAM

    key_pem = ca.private_key_pem(kek)  # always: a wrong key is reported at every start
    current = confdir / PUBLIC_CERT
    key_file = confdir / PRIVATE_FILES[0]
    if key_file.exists() and current.exists() and current.read_text() == ca.cert_pem:
        return False
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    confdir.mkdir(parents=True, exist_ok=True)
    os.chmod(confdir, 0o700)
    name = CA_BASENAME.encode()
    none = serialization.NoEncryption()
    traditional = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, none
    )
    files = {  # the key file first: it is the one mitmproxy loads
        f"{CA_BASENAME}-ca.pem": (traditional + ca.cert_pem.encode(), 0o600),
        f"{CA_BASENAME}-ca.p12": (
            pkcs12.serialize_key_and_certificates(name, key, cert, None, none),
            0o600,
        ),
        f"{CA_BASENAME}-ca-cert.cer": (ca.cert_pem.encode(), 0o644),
        f"{CA_BASENAME}-ca-cert.p12": (
            pkcs12.serialize_key_and_certificates(name, None, cert, None, none),
            0o644,
        ),
        PUBLIC_CERT: (ca.cert_pem.encode(), 0o644),
    }
    for filename, (data, mode) in files.items():
        _write(confdir / filename, data, mode)
    dhparam = confdir / f"{CA_BASENAME}-dhparam.pem"
    if not dhparam.exists():
        _write(dhparam, DEFAULT_DHPARAM, 0o644)
    return True


# --- a CA of this data dir alone (tools and tests without a registry) -------------------------


def _lock_down(directory: Path) -> None:
    os.chmod(directory, 0o700)
    for name in PRIVATE_FILES:
        path = directory / name
        if path.exists():
            os.chmod(path, 0o600)


def ensure_ca(data_dir: Path) -> Path:
    """The public cert in `data_dir/egress-ca/`: the one an egress replica materialised
    there, else a new CA of this data dir alone (for tools that run without a registry).

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
