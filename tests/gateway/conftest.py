"""A real gateway process per test module (SQLite in a temp dir unless a test asks otherwise)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.procs import CoreProcess


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    proc = CoreProcess("gateway", Path(tmp_path_factory.mktemp("gw"))).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(gateway: CoreProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as c:
        yield c
