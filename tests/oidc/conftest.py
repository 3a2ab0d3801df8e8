"""OIDC tests: a real OpenID Provider (oidc-provider, Node.js 20, pinned in provider/), real
gateway processes configured for it, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from oidc.idp import FixedPortGateway, IdentityProvider, ensure_node_modules, start_gateway


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    """The provider, on `localhost` (another site than the gateway's 127.0.0.1)."""
    ensure_node_modules()
    provider = IdentityProvider(host="localhost").start(tmp_path_factory.mktemp("idp"))
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="module")
def gateway(
    idp: IdentityProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FixedPortGateway]:
    gw = start_gateway(idp, Path(tmp_path_factory.mktemp("oidc-gw")))
    try:
        yield gw
    finally:
        gw.stop()
