"""Ed25519 signing through libsodium's detached call (GIL held), and its fallback."""

from __future__ import annotations

import ctypes

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_sign_seed_keypair

from vivified.registry import ed25519

SEED = bytes(range(32))
SECRET = crypto_sign_seed_keypair(SEED)[1]
OPENSSL = Ed25519PrivateKey.from_private_bytes(SEED)


@pytest.mark.parametrize(
    "message",
    [b"", b"a.b", b"x" * 100_000, "ü.é".encode(), bytes(range(256))],
    ids=["empty", "short", "large", "utf8", "all-bytes"],
)
@pytest.mark.parametrize("which", ["detached", "pynacl"])
def test_signatures_are_openssl_s_byte_for_byte(which: str, message: bytes) -> None:
    sign = ed25519._load() if which == "detached" else ed25519._pynacl
    assert sign is not None  # PyNaCl's extension exports libsodium's API here
    signature = sign(message, SECRET)
    assert signature == OPENSSL.sign(message)
    OPENSSL.public_key().verify(signature, message)  # raises InvalidSignature when wrong


@pytest.mark.parametrize("length", [0, 32, 63, 65], ids=["empty", "seed-only", "short", "long"])
def test_a_secret_of_the_wrong_size_is_refused_before_libsodium_reads_it(length: int) -> None:
    sign = ed25519._load()
    assert sign is not None
    with pytest.raises(ValueError, match="64 bytes"):
        sign(b"m", SECRET[:length] if length <= 64 else SECRET + b"\0")


def test_without_the_symbol_pynacl_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(path: str) -> ctypes.PyDLL:
        raise OSError(f"cannot load {path}")

    monkeypatch.setattr(ed25519.ctypes, "PyDLL", missing)
    sign = ed25519.signer()
    assert sign is ed25519._pynacl
    assert sign(b"m", SECRET) == OPENSSL.sign(b"m")
