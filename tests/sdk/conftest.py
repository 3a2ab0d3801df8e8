"""Fixtures for the SDK's tests: real core processes, a real nats-server (see helpers.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sdk.helpers import Gateway, Nats


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name in list(os.environ):
        if name.startswith("VIVIFIED_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(Path(tmp_path_factory.mktemp("sdkgw"))).start()
    yield gw
    gw.stop()


@pytest.fixture
def fresh_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """A factory: a gateway of its own (not started) with extra settings."""
    made: list[Gateway] = []

    def make(**env: str) -> Gateway:
        gw = Gateway(tmp_path / f"gw{len(made)}", env)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.stop()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[Nats]:
    n = Nats(tmp_path / "nats")
    n.start()
    yield n
    n.stop()
