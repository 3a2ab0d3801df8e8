"""Once mitmproxy listens, the egress process reports its port and freezes its startup heap
(modules, mitmproxy's and our state: kept out of every later garbage collection)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons

from vivified.egress import launcher


async def test_running_reports_the_port_and_freezes_the_heap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(launcher.gc, "collect", lambda: calls.append("collect") or 0)
    monkeypatch.setattr(launcher.gc, "freeze", lambda: calls.append("freeze"))
    pinning: Any = SimpleNamespace(own_listeners=[])
    settings: Any = SimpleNamespace(host="127.0.0.1")
    ready = launcher._Ready(pinning, settings, str(tmp_path / "egress.port"), None)
    with taddons.context() as tctx:
        server = Proxyserver()  # type: ignore[no-untyped-call]
        tctx.master.addons.add(server)
        monkeypatch.setattr(server, "listen_addrs", lambda: [("127.0.0.1", 43210)])
        ready.running()
    assert ready.port == 43210
    assert (tmp_path / "egress.port").read_text().strip() == "43210"
    assert pinning.own_listeners == [("127.0.0.1", 43210)]
    assert calls == ["collect", "freeze"]  # collected first: no garbage is kept for good
