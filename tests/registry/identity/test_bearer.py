"""The one accepted way to present a credential."""

from __future__ import annotations

import pytest

from vivified.registry.identity.bearer import extract_bearer
from vivified.registry.identity.tokens import TokenError

H = b"authorization"

REFUSED = [
    pytest.param([], b"", "missing_token", id="no-header"),
    pytest.param(
        [(H, b"Bearer a"), (H, b"Bearer b")], b"", "duplicate_authorization", id="two-headers"
    ),
    pytest.param(
        [(H, b"Bearer a"), (b"Authorization", b"Bearer a")],
        b"",
        "duplicate_authorization",
        id="two-headers-mixed-case",
    ),
    pytest.param([(H, b"Basic YWJjOmRlZg==")], b"", "malformed_authorization", id="basic-scheme"),
    pytest.param([(H, b"Bearer")], b"", "malformed_authorization", id="no-token"),
    pytest.param([(H, b"Bearer a b")], b"", "malformed_authorization", id="space-in-token"),
    pytest.param([(H, b"abc.def.ghi")], b"", "malformed_authorization", id="no-scheme"),
    pytest.param([(H, b"Bearer " + b"a" * 9000)], b"", "token_too_large", id="huge"),
    pytest.param([(H, b"Bearer a")], b"token=abc", "token_in_query", id="query-token"),
    pytest.param([], b"x=1&access_token=abc", "token_in_query", id="query-access-token"),
    pytest.param([], b"JWT=abc", "token_in_query", id="query-jwt-any-case"),
]


@pytest.mark.parametrize(("headers", "query", "code"), REFUSED)
def test_refused(headers: list[tuple[bytes, bytes]], query: bytes, code: str) -> None:
    with pytest.raises(TokenError) as err:
        extract_bearer(headers, query)
    assert err.value.code == code


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"Bearer abc.def.ghi", id="canonical"),
        pytest.param(b"bearer abc.def.ghi", id="scheme-any-case"),
        pytest.param(b"Bearer  abc.def.ghi ", id="extra-spaces"),
    ],
)
def test_accepted(value: bytes) -> None:
    assert extract_bearer([(b"host", b"x"), (H, value)], b"page=2") == "abc.def.ghi"
