"""docs/plugin-protocol.md: its curl walk-through runs, as written, against a real core
(gateway and egress proxy on one data dir, a real nats-server)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk.helpers import Nats
from support.procs import ADMIN_TOKEN, CoreProcess

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin-protocol.md"


def walk_through() -> str:
    blocks = re.findall(r"^```bash\n(.*?)^```", DOC.read_text(), flags=re.M | re.S)
    assert len(blocks) == 1, "the doc has exactly one bash walk-through"
    return blocks[0]


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoreProcess, CoreProcess]]:
    data = tmp_path_factory.mktemp("protocol")
    nats = Nats(data / "nats")
    env = {"VIVIFIED_NATS_URL": nats.start(), "VIVIFIED_SNAPSHOT_RELOAD_INTERVAL": "0.5"}
    gateway = CoreProcess("gateway", data, env)
    egress = CoreProcess("egress", data, env)
    try:
        gateway.start()  # migrates the registry the egress proxy reads
        egress.start()
        yield gateway, egress
    finally:
        egress.stop()
        gateway.stop()
        nats.stop()


def test_the_walk_through_runs_and_shows_each_step(
    core: tuple[CoreProcess, CoreProcess], tmp_path: Path
) -> None:
    gateway, egress = core
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("VIVIFIED_")}
    env.update(GW=gateway.url, ADMIN=ADMIN_TOKEN, EGRESS=f"127.0.0.1:{egress.port}")
    script = tmp_path / "walk.sh"
    script.write_text(walk_through())
    ran = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    out = ran.stdout
    assert ran.returncode == 0, out + ran.stderr
    for line in (
        "Ed25519",
        "registered: active",
        "token swapped",
        "heartbeat: healthy",
        "call: hello",
        "denied: not_permitted",
        "undeclared: 404",
        "egress: host_not_allowed",
        "egress without credentials: 407",
    ):
        assert line in out.splitlines(), f"{line!r} missing from:\n{out}"
    published = re.findall(r"^202 published: (evt-\S+)$", out, flags=re.M)
    assert len(published) == 2
    assert published[0] == published[1]
    assert re.search(r"^audit ok: True \d+$", out, flags=re.M)
    assert ADMIN_TOKEN not in out


def test_walk_through_needs_its_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GW", "ADMIN", "EGRESS")}
    script = tmp_path / "walk.sh"
    script.write_text(walk_through())
    ran = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert ran.returncode != 0
    assert "gateway URL" in ran.stderr
