"""The console overview's last hour (per process, from the same counters as /metrics), and
`VIVIFIED_METRICS=false`, which turns the series, the hooks and the chart off."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from metrics.rig import Hook, make_admin, wait_ready
from support.manifests import simple
from support.procs import ADMIN_TOKEN, CoreProcess, admin_headers, register, registration_token
from support.upstream import serve_in_thread


@pytest.fixture(params=[pytest.param("on", id="metrics-on"), pytest.param("off", id="metrics-off")])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, object]]:
    env = {"VIVIFIED_METRICS": "false"} if request.param == "off" else {}
    gw = CoreProcess("gateway", tmp_path, {"VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01", **env})
    gw.start()
    try:
        wait_ready(gw)
        with (
            serve_in_thread(Hook().app()) as url,
            httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c,
        ):
            endpoints = {"health": "/health", "items": "/api/items/{id}"}
            tokens = {}
            for m in (
                simple("beta", base_url=url, endpoints=endpoints),
                simple("alpha", dependencies=["beta"]),
                simple("gamma"),
            ):
                r = register(c, m, registration_token(c))
                assert r.status_code == 201, r.text
                tokens[m["id"]] = r.json()["token"]
            auditor = make_admin(c, "auditor", ["audit:read"])
            yield {"gw": gw, "tokens": tokens, "auditor": auditor, "mode": request.param}
    finally:
        gw.stop()


def overview(gw: CoreProcess, token: str) -> str:
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c:
        r = c.post("/console/login", data={"token": token})
        assert r.status_code == 303, r.text
        r = c.get("/console/")
        assert r.status_code == 200, r.text
        return " ".join(r.text.split())


def traffic(gw: CoreProcess, tokens: dict[str, str]) -> None:
    for caller, n, status in (("alpha", 3, 200), ("gamma", 2, 403)):
        for i in range(n):
            r = httpx.get(
                f"{gw.url}/beta/items/{i}",
                headers={"Authorization": f"Bearer {tokens[caller]}"},
                trust_env=False,
                timeout=30,
            )
            assert r.status_code == status, r.text


def test_overview_draws_the_last_hour_from_the_counters(world: dict[str, object]) -> None:
    gw, tokens = world["gw"], world["tokens"]
    assert isinstance(gw, CoreProcess)
    assert isinstance(tokens, dict)
    traffic(gw, tokens)
    page = overview(gw, ADMIN_TOKEN)
    scrape = httpx.get(gw.url + "/metrics", headers=admin_headers(), trust_env=False)
    if world["mode"] == "off":
        assert scrape.status_code == 404, scrape.text
        assert scrape.json()["reason"] == "not_found"
        assert "metrics are turned off" in scrape.json()["detail"]
        assert "Traffic, last hour" not in page
        return
    assert scrape.status_code == 200, scrape.text
    assert "Traffic, last hour" in page
    caption = re.search(r'data-lane="operator"> <figcaption>(.*?)</figcaption>', page)
    assert caption is not None, page
    assert "operator lane: 5 requests, 2 denied;" in caption.group(1)
    assert re.search(r"p99 this minute \d+\.\d ms", caption.group(1))
    bars = re.findall(
        r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" fill="#4a7bb7"', page
    )
    assert bars
    assert max(float(h) for h in bars) == 80.0  # the busiest minute fills the chart
    assert "<script>" not in page  # CSP: no inline script
    assert '<figure class="traffic" data-lane="events">' in page
    # an admin without metrics:read sees no chart
    auditor = world["auditor"]
    assert isinstance(auditor, str)
    assert "Traffic, last hour" not in overview(gw, auditor)
