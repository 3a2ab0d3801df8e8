"""The webhook request target the dispatcher writes on the wire."""

from __future__ import annotations

import pytest

from vivified.gateway.events.dispatch import _target


@pytest.mark.parametrize(
    ("base_url", "path", "expected"),
    [
        pytest.param("http://127.0.0.1:9000", "/events", b"/events", id="bare-origin"),
        pytest.param("http://h:1/", "/events", b"/events", id="trailing-slash"),
        pytest.param("http://h:1/svc/", "/hooks/in", b"/svc/hooks/in", id="base-path-kept"),
        pytest.param("http://h:1", "/a b", b"/a%20b", id="space-encoded"),
        pytest.param(
            "http://h:1", "/x\r\nHost: evil", b"/x%0D%0AHost:%20evil", id="crlf-cannot-end-line"
        ),
        pytest.param("http://h:1", "/caf\u00e9", b"/caf%C3%A9", id="non-ascii-encoded"),
        pytest.param("http://h:1", "/ok%20already", b"/ok%20already", id="escapes-kept"),
    ],
)
def test_webhook_target(base_url: str, path: str, expected: bytes) -> None:
    assert _target(base_url, path) == expected
