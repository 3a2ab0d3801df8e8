"""The one way a credential reaches core: a single `Authorization: Bearer` header.

Two Authorization headers, a token in the query string (where proxies and access logs keep
it), or a header that is not exactly `Bearer <token>` are refused before any lookup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl

from vivified.registry.identity.tokens import MAX_TOKEN_BYTES, TokenError

QUERY_TOKEN_PARAMS = frozenset(
    {"token", "access_token", "id_token", "jwt", "auth", "authorization", "bearer", "api_key"}
)
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/=]+")  # RFC 6750 b64token


def extract_bearer(headers: Iterable[tuple[bytes, bytes]], query_string: bytes = b"") -> str:
    """The token of the request's one Bearer header; raises TokenError (always a 401)."""
    if query_string:
        query = query_string.decode("latin-1")
        for name, _ in parse_qsl(query, keep_blank_values=True):
            if name.lower() in QUERY_TOKEN_PARAMS:
                raise TokenError(
                    "token_in_query",
                    "credentials are never accepted in the query string; "
                    "send them as 'Authorization: Bearer <token>'",
                )
    values = [v for k, v in headers if k.lower() == b"authorization"]
    if not values:
        raise TokenError("missing_token", "send 'Authorization: Bearer <token>'")
    if len(values) > 1:
        raise TokenError("duplicate_authorization", "send exactly one Authorization header")
    raw = values[0]
    if len(raw) > MAX_TOKEN_BYTES + 16:
        raise TokenError("token_too_large", f"tokens are at most {MAX_TOKEN_BYTES} bytes")
    text = raw.decode("latin-1").strip()
    scheme, _, token = text.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not _TOKEN.fullmatch(token):
        raise TokenError(
            "malformed_authorization", "the Authorization header must be 'Bearer <token>'"
        )
    return token
