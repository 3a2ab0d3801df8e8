"""`vivified up`'s banner: the proxy variables a plugin needs, in both spellings."""

from __future__ import annotations

from pathlib import Path

import pytest

from vivified.config.settings import load_settings
from vivified.config.up import banner


@pytest.mark.parametrize(
    "line",
    [
        pytest.param('http_proxy="$EGRESS" HTTP_PROXY="$EGRESS"', id="http-both-cases"),
        pytest.param('https_proxy="$EGRESS" HTTPS_PROXY="$EGRESS"', id="https-both-cases"),
        pytest.param('no_proxy="127.0.0.1" NO_PROXY="127.0.0.1"', id="no-proxy-both-cases"),
        pytest.param("gateway_via_proxy", id="names-the-refusal"),
    ],
)
def test_banner_shows_both_spellings_of_every_proxy_variable(tmp_path: Path, line: str) -> None:
    settings = load_settings(None, {"VIVIFIED_DATA_DIR": str(tmp_path)})
    text = banner(settings, {"gateway": 8080, "egress": 8081}, None, "nats://x:4222", True)
    assert line in text
