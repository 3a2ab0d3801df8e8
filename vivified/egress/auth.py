"""Proxy-Authorization: Basic base64(`plugin-id:token`) or Bearer `token`, verified with core's
token service.

Bearer is for clients that cannot send Basic on CONNECT (Java's HttpClient and
HttpURLConnection, unless the whole JVM sets `jdk.http.auth.tunneling.disabledSchemes=`) but do
send a header set by the plugin: the plugin id is then the verified token's subject."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from vivified.registry.identity.tokens import Generations, TokenService, verify_current

REALM = "vivified-egress"
PROXY_AUTHENTICATE = f'Basic realm="{REALM}"'


@dataclass(frozen=True)
class Credential:
    """The parsed proxy credential (the token is never logged); `plugin_id` is empty for a
    Bearer credential, whose plugin is the token's subject."""

    plugin_id: str
    token: str

    def __repr__(self) -> str:
        return f"Credential(plugin_id={self.plugin_id!r}, token=<hidden>)"

    @property
    def bearer(self) -> bool:
        return not self.plugin_id


@dataclass(frozen=True)
class AuthResult:
    """Who the caller is, or why not (`reason` is a stable code)."""

    plugin_id: str | None
    reason: str
    claimed_id: str = ""

    @property
    def ok(self) -> bool:
        return self.plugin_id is not None


def parse_proxy_authorization(values: Sequence[str]) -> Credential | None:
    """Exactly one `Basic` credential `id:token` or `Bearer` token; anything else is None."""
    if len(values) != 1:
        return None
    parts = values[0].strip().split()
    if len(parts) != 2 or parts[0].lower() not in ("basic", "bearer"):
        return None
    if parts[0].lower() == "bearer":
        return Credential("", parts[1])
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    plugin_id, sep, token = decoded.partition(":")
    if not sep or not plugin_id or not token:
        return None
    return Credential(plugin_id, token)


class ProxyAuthenticator:
    """Verifies credentials against the token service and the current token generations (a
    refusal on a snapshot behind the registry is confirmed first: `verify_current`)."""

    def __init__(self, tokens: TokenService, snapshots: Generations) -> None:
        self._tokens = tokens
        self._snapshots = snapshots

    async def authenticate(self, values: Sequence[str]) -> AuthResult:
        """Check the Proxy-Authorization header values of one CONNECT or plain request."""
        cred = parse_proxy_authorization(values)
        if cred is None:
            reason = "missing_credentials" if not values else "malformed_credentials"
            return AuthResult(None, reason)
        try:
            claims = await verify_current(self._tokens, self._snapshots, cred.token)
        except Exception as exc:  # TokenError and anything a broken token raises
            code = getattr(exc, "code", "invalid_token")
            return AuthResult(None, str(code or "invalid_token"), cred.plugin_id)
        subject = claims.plugin_id
        if cred.bearer:
            if not subject:
                return AuthResult(None, "invalid_token")
            return AuthResult(subject, "authenticated", subject)
        if not hmac.compare_digest(subject.encode(), cred.plugin_id.encode()):
            return AuthResult(None, "credential_mismatch", cred.plugin_id)
        return AuthResult(subject, "authenticated", cred.plugin_id)
