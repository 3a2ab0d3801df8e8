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


@pytest.mark.parametrize(
    ("env", "gateway_says", "egress_says"),
    [
        pytest.param({}, False, False, id="one-process-each"),
        pytest.param({"VIVIFIED_GATEWAY_WORKERS": "2"}, True, False, id="gateway-workers"),
        pytest.param({"VIVIFIED_EGRESS_WORKERS": "3"}, False, True, id="egress-workers"),
    ],
)
def test_banner_names_worker_counts(
    tmp_path: Path, env: dict[str, str], gateway_says: bool, egress_says: bool
) -> None:
    settings = load_settings(None, {"VIVIFIED_DATA_DIR": str(tmp_path), **env})
    text = banner(settings, {"gateway": 8080, "egress": 8081}, None, "nats://x:4222", True)
    gateway = next(line for line in text.splitlines() if line.startswith("  gateway"))
    egress = next(line for line in text.splitlines() if line.startswith("  egress proxy"))
    assert gateway.endswith(", 2 workers") is gateway_says
    assert egress.endswith(", 3 workers") is egress_says
