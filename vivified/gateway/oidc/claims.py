"""From the provider's claims to what core grants: admin scopes and the email check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vivified.gateway.oidc.validation import TokenRefused


def claim_values(claims: Mapping[str, Any], claim: str) -> list[str]:
    """The configured claim as a list of strings (a string claim is one value)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def mapped_scopes(
    claims: Mapping[str, Any], claim: str, table: Mapping[str, tuple[str, ...]]
) -> list[str]:
    """The admin scopes the claim's values map to now (sorted, unique; maybe none)."""
    scopes: set[str] = set()
    for value in claim_values(claims, claim):
        scopes.update(table.get(value, ()))
    return sorted(scopes)


def checked_email(claims: Mapping[str, Any], allowed_domains: frozenset[str]) -> str:
    """The user's email (for display); TokenRefused when a domain list is configured and the
    email is missing, unverified or outside it."""
    email = claims.get("email")
    email = email.strip() if isinstance(email, str) else ""
    if not allowed_domains:
        return email
    domain = email.rpartition("@")[2].lower()
    if not email or "@" not in email or domain not in allowed_domains:
        raise TokenRefused(
            "email_domain_not_allowed", "your email address is not in a domain allowed to sign in"
        )
    if claims.get("email_verified") is False:
        raise TokenRefused("email_not_verified", "your email address is not verified")
    return email
