"""`vivified demo --once`: core and the three examples tell their story, then everything stops."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

STORY = [
    r"lifecycle +APPROVED +user-management: registered -> active",
    r"lifecycle +APPROVED +human-resources: registered -> active",
    r"lifecycle +APPROVED +accounting: registered -> active",
    r"operator lane +ALLOWED +demo-driver -> GET /identity/users/42 -> 200",
    r"operator lane +DENIED +demo-driver -> GET /accounting/accounts -> 403 not_permitted",
    r"event lane +PUBLISHED +human-resources: UserCreated \w+",
    r"event lane +DELIVERED +accounting: UserCreated \w+ -> account for u-",
    r"egress +ALLOWED +accounting -> http://rates\.example\.org:\d+/v1/latest\S* -> 1 USD = 0\.92",
    r"egress +REFUSED +demo-driver -> http://www\.example\.net/ -> 403 host_not_allowed",
    r"audit +VERIFIED +hash chain intact: \d+ records checked",
    r"demo +PASSED",
]


def listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


@pytest.mark.timeout(150)
def test_demo_once_tells_the_story_and_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    ran = subprocess.run(
        [sys.executable, "-m", "vivified", "demo", "--once", "--data-dir", str(tmp_path / "d")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = ran.stdout
    assert ran.returncode == 0, out + ran.stderr
    lines = out.splitlines()
    at = -1
    for pattern in STORY:  # each story line, in this order
        found = next((i for i, line in enumerate(lines) if re.search(pattern, line)), None)
        assert found is not None, f"missing {pattern!r} in:\n{out}"
        assert found > at, f"{pattern!r} out of order in:\n{out}"
        at = found
    assert "FAILED" not in out
    urls = set(re.findall(r"http://127\.0\.0\.1:\d+", out))
    assert len(urls) >= 4  # the gateway and the three plugins
    assert not [u for u in urls if listening(u)]  # every child stopped


def test_demo_without_examples_fails_clearly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    ran = subprocess.run(
        [sys.executable, "-m", "vivified", "demo", "--once", "--examples", str(tmp_path / "no")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 1
    assert "no examples folder" in ran.stdout
    assert "Traceback" not in ran.stdout + ran.stderr
