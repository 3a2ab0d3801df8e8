"""Opaque secrets (registration and admin tokens): generation, hashing, comparison."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret(prefix: str) -> tuple[str, str]:
    """A fresh 256-bit token with a readable prefix, and the hash to store."""
    token = prefix + secrets.token_urlsafe(32)
    return token, hash_secret(token)


def hash_secret(token: str) -> str:
    """SHA-256 hex. These are 256-bit random values, so a fast hash is the right tool: there
    is nothing to brute-force, and a slow KDF would only slow every authenticated request."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def secrets_equal(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode(), b.encode())
