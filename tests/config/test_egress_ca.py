"""The egress CA: created once, private key 0600, concurrent creators agree."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vivified.config.egress_ca import ca_dir, ensure_ca


def test_created_once_with_private_key_locked_down(tmp_path: Path) -> None:
    cert = ensure_ca(tmp_path)
    assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in cert.read_text()
    key = ca_dir(tmp_path) / "mitmproxy-ca.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca_dir(tmp_path)).st_mode) == 0o700
    before = cert.read_bytes()
    assert ensure_ca(tmp_path).read_bytes() == before


def test_racing_creators_end_with_one_ca(tmp_path: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: ensure_ca(tmp_path), range(4)))
    assert len({p.read_bytes() for p in paths}) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".egress-ca-")]
