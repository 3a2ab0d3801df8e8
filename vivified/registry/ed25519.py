"""Ed25519 signatures from libsodium's detached call, made while holding the GIL.

Core signs an `X-Vivified-Assertion` on every operator-lane call and an assertion on every
event delivery, so this is on the hot path. PyNaCl's `crypto_sign` goes through cffi, which
releases the GIL for the ~16 µs of the signature, allocates a buffer for signature plus
message and copies the message into it. Released, the GIL goes to whichever thread waits for
it (the SQLite writer's), and the event loop waits to get it back. Measured on the operator
lane with the gateway on one core: ~5 % more calls per second signing here instead.

The function is libsodium's own, from the copy PyNaCl ships (its extension module exports the
libsodium API), called through `ctypes.PyDLL`, which keeps the GIL. Where that symbol cannot
be found, PyNaCl's call is used. Ed25519 is deterministic: both give the same bytes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import nacl._sodium  # type: ignore[import-not-found]
from nacl.bindings import crypto_sign, crypto_sign_BYTES, crypto_sign_SECRETKEYBYTES

Signer = Callable[[bytes, bytes], bytes]


def _pynacl(data: bytes, secret: bytes) -> bytes:
    return crypto_sign(data, secret)[:crypto_sign_BYTES]


def _load() -> Signer | None:
    """libsodium's `crypto_sign_detached`, GIL held; None where it cannot be loaded."""
    try:
        detached = ctypes.PyDLL(nacl._sodium.__file__).crypto_sign_detached
    except (OSError, AttributeError):
        return None
    detached.argtypes = [
        ctypes.c_char_p,  # signature out (64 bytes)
        ctypes.c_void_p,  # signature length out (NULL: always 64)
        ctypes.c_char_p,  # message
        ctypes.c_ulonglong,  # message length
        ctypes.c_char_p,  # secret key (64 bytes: seed + public key)
    ]
    detached.restype = ctypes.c_int

    def sign(data: bytes, secret: bytes) -> bytes:
        if len(secret) != crypto_sign_SECRETKEYBYTES:  # libsodium reads 64 bytes from it
            raise ValueError("an Ed25519 secret key is 64 bytes")
        out = ctypes.create_string_buffer(crypto_sign_BYTES)
        if detached(out, None, data, len(data), secret) != 0:
            raise RuntimeError("libsodium could not sign")
        return out.raw

    return sign


def signer() -> Signer:
    """`sign(data, secret)` → the 64-byte Ed25519 signature of `data`."""
    return _load() or _pynacl
