"""Fixtures of the client matrix: one real egress proxy on loopback for the whole session
(the helpers live in support.egress)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.egress import Egress, Upstreams, _no_proxy_env, start_egress, upstreams

__all__ = ["_no_proxy_env", "matrix_egress", "upstreams"]


@pytest.fixture(scope="session")
def matrix_egress(
    tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams
) -> Iterator[Egress]:
    eg = start_egress(Path(tmp_path_factory.mktemp("matrix-egress")), upstreams)
    yield eg
    eg.proc.stop()
