"""GET /metrics scraped by a real Prometheus from a running core: two gateway workers (their
counters summed through the multiprocess files), NATS, and the egress proxy's own address.

Known traffic, then the Prometheus query API must give exactly those numbers; label sets stay
bounded after 1,000 distinct paths; /metrics needs the `metrics:read` scope.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from metrics.rig import PROMETHEUS, Core, Prometheus, families, prometheus
from prometheus_client.mmap_dict import MmapedDict
from support.procs import ADMIN_TOKEN
from support.waiting import eventually

needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus is missing: install Debian's `prometheus` package (scripts/_venv.sh does)",
)
USER = {"user_id": "u1", "username": "ada"}


@pytest.fixture(scope="module")
def prom(core: Core, tmp_path_factory: pytest.TempPathFactory) -> Prometheus:
    if PROMETHEUS is None:
        pytest.skip("prometheus is missing: install Debian's `prometheus` package")
    with prometheus(
        tmp_path_factory.mktemp("prometheus"),
        core.gw.port,
        core.egress_metrics_port,
        core.metrics_token,
    ) as p:
        yield p


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        pytest.param("none", 401, "missing_token", id="no-token"),
        pytest.param("plugin", 403, "admin_required", id="plugin-token"),
        pytest.param("auditor", 403, "missing_scope", id="admin-without-metrics-read"),
        pytest.param("bogus", 401, "invalid_admin_token", id="unknown-admin-token"),
    ],
)
def test_metrics_needs_the_metrics_read_scope(core: Core, who: str, status: int, code: str) -> None:
    token = {
        "none": "",
        "plugin": core.tokens["alpha"],
        "auditor": core.other_admin_token,
        "bogus": "vva_" + "x" * 40,
    }[who]
    r = core.scrape(token)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["reason"] == code
    assert "vivified_" not in r.text


def test_metrics_read_gets_prometheus_text(core: Core) -> None:
    for token in (core.metrics_token, ADMIN_TOKEN):
        r = core.scrape(token)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain; version=")
        assert "# TYPE vivified_audit_records_written_total counter" in r.text
        assert "vivified_build_info{" in r.text


REQUESTS = "vivified_operator_requests_total"


def per_worker(core: Core, **labels: str) -> dict[str, float]:
    """Each worker's own value of the operator-lane counter with these labels (read from its
    multiprocess file)."""
    out = {}
    for path in core.multiproc_dir().glob("counter_*.db"):
        total = 0.0
        for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, have, *_ = json.loads(key)
            if name == REQUESTS and all(have.get(k) == v for k, v in labels.items()):
                total += value
        out[path.stem] = total
    return out


def scraped(core: Core, name: str, **labels: str) -> float:
    """The sum of `name`'s samples with these labels, from one direct scrape of /metrics."""
    total = 0.0
    for key, value in families(core.scrape().text).items():
        metric, _, rest = key.partition("{")
        if metric == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


@needs_prometheus
def test_operator_calls_are_counted_once_summed_over_workers(core: Core, prom: Prometheus) -> None:
    r = core.call("gamma", "/beta/items/1")
    assert r.status_code == 403, r.text
    reason = r.json()["reason"]
    # Other tests of this module call too: every number is a difference from here.
    alpha = {"caller": "alpha", "target": "beta", "decision": "allow"}
    gamma = {"caller": "gamma", "target": "beta", "decision": "deny", "reason": reason}
    gamma["status_class"] = "4xx"
    anonymous = {"caller": "unknown", "target": "unknown", "reason": "missing_token"}
    # the hook runs just after the answer is sent: let it land before taking the baseline
    eventually(lambda: scraped(core, REQUESTS, **gamma) >= 1, 10, "the first denial counted")
    added = "vivified_operator_added_latency_seconds_count"
    upstream = "vivified_operator_upstream_latency_seconds_count"
    before = {
        "alpha": scraped(core, REQUESTS, **alpha),
        "gamma": scraped(core, REQUESTS, **gamma),
        "anonymous": scraped(core, REQUESTS, **anonymous),
        "added": scraped(core, added, target="beta"),
        "upstream": scraped(core, upstream, target="beta"),
    }
    workers_before = per_worker(core, **alpha)
    allowed = 0
    # Fresh connections until both workers have served some (the kernel spreads them).
    while (
        allowed < 12
        or min(now - workers_before.get(w, 0.0) for w, now in per_worker(core, **alpha).items())
        <= 0
    ):
        r = core.call("alpha", f"/beta/items/{allowed}")
        assert r.status_code == 200, r.text
        allowed += 1
        assert allowed < 300, "the kernel sent every connection to one worker"
    for i in range(4):
        r = core.call("gamma", f"/beta/items/{i}")
        assert r.status_code == 403, r.text
    r = core.call(None, "/beta/items/1")
    assert r.status_code == 401, r.text
    assert len(core.worker_pids()) == 2
    assert len(per_worker(core, **alpha)) == 2
    eventually(
        lambda: sum(per_worker(core, **alpha).values()) - sum(workers_before.values()) == allowed,
        10,
        "the workers' own counts add up to the calls made",
    )

    def q(name: str, labels: dict[str, str]) -> str:
        return f"sum({name}{{{','.join(f'{k}={v!r}' for k, v in labels.items())}}})".replace(
            "'", '"'
        )

    prom.wait_value(q(REQUESTS, alpha), before["alpha"] + allowed)
    prom.wait_value(q(REQUESTS, gamma), before["gamma"] + 4)
    prom.wait_value(q(REQUESTS, anonymous), before["anonymous"] + 1)
    prom.wait_value(q(upstream, {"target": "beta"}), before["upstream"] + allowed)
    prom.wait_value(q(added, {"target": "beta"}), before["added"] + allowed + 4)
    assert prom.value('vivified_operator_circuit_state{target="beta"}') == 0
    # each worker's own /metrics answers with the sum over both (fresh connections: either)
    for _ in range(6):
        assert scraped(core, REQUESTS, **gamma) == before["gamma"] + 4


@needs_prometheus
def test_state_gauges_reach_prometheus(core: Core, prom: Prometheus) -> None:
    eventually(lambda: prom.value("min(vivified_registry_up)") == 1, 30, "registry_up")
    eventually(lambda: prom.value("min(vivified_nats_connected)") == 1, 30, "nats_connected")
    eventually(
        lambda: (
            prom.value('max(vivified_plugin_health{plugin="beta",state="unknown"})') is not None
        ),
        30,
        "plugin health",
    )
    assert prom.value("sum(vivified_audit_queue_depth)") is not None
    eventually(
        lambda: (prom.value("sum(vivified_audit_records_written_total)") or 0) > 0, 30, "written"
    )
    assert prom.value("sum(vivified_audit_records_quarantined_total)") == 0
    assert (prom.value("max(vivified_audit_chain_head_timestamp_seconds)") or 0) > 0
    assert (prom.value("sum(vivified_audit_batch_size_count)") or 0) > 0
    build = prom.query('vivified_build_info{job="vivified-gateway"}')
    assert len(build) == 1
    assert build[0][1] == 1
    assert build[0][0]["version"]
    # no alert fires on a healthy core (the deploy/ rules are loaded into this Prometheus)
    alerts = httpx.get(prom.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert [a for a in alerts if a["state"] == "firing"] == []


@needs_prometheus
def test_events_published_and_delivered(core: Core, prom: Prometheus) -> None:
    ids = []
    for _ in range(3):
        r = httpx.post(
            core.gw.url + "/events",
            json={"type": "UserCreated", "data": USER, "id": str(uuid.uuid4())},
            headers={"Authorization": f"Bearer {core.tokens['hr-app']}"},
            trust_env=False,
            timeout=10,
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    r = httpx.post(
        core.gw.url + "/events",
        json={"type": f"Made-Up-{uuid.uuid4().hex}", "data": {}},
        headers={"Authorization": f"Bearer {core.tokens['hr-app']}"},
        trust_env=False,
        timeout=10,
    )
    assert r.status_code == 422, r.text
    eventually(lambda: {e["id"] for e in core.hook.events} >= set(ids), 30, "deliveries")
    prom.wait_value('sum(vivified_events_published_total{type="UserCreated",decision="allow"})', 3)
    prom.wait_value('sum(vivified_events_published_total{type="unknown",decision="deny"})', 1)
    prom.wait_value(
        'sum(vivified_events_deliveries_total{type="UserCreated",subscriber="acct",'
        'outcome="delivered"})',
        3,
    )
    prom.wait_value('sum(vivified_events_delivery_latency_seconds_count{subscriber="acct"})', 3)
    eventually(
        lambda: prom.value('max(vivified_events_consumer_lag{subscriber="acct"})') == 0,
        30,
        "consumer lag 0",
    )


@needs_prometheus
def test_label_sets_stay_bounded_after_1000_distinct_paths(core: Core, prom: Prometheus) -> None:
    def round_of(n: int, tag: str) -> None:
        headers = {"Authorization": f"Bearer {core.tokens['alpha']}"}
        with httpx.Client(base_url=core.gw.url, trust_env=False, timeout=30) as c:
            for i in range(n):
                assert c.get(f"/beta/items/{tag}{i}", headers=headers).status_code == 200
                r = c.get(f"/svc-{tag}{i}/x/{i}", headers=headers)
                assert r.status_code == 404, r.text
                r = c.get(f"/claimed-{tag}{i}/x", headers={"Authorization": "Bearer nope"})
                assert r.status_code == 401, r.text

    def series() -> set[str]:
        text = families(core.scrape().text)
        return {k for k in text if k.startswith("vivified_")}

    round_of(3, "warm")
    before = series()
    round_of(1000, "path")
    after = series()
    assert after == before
    assert not any("path" in s or "svc-" in s or "claimed-" in s for s in after)
    expr = 'count({__name__=~"vivified_operator_.*",job="vivified-gateway"})'
    eventually(
        lambda: (
            prom.value(expr) == float(len([s for s in after if s.startswith("vivified_operator_")]))
        ),
        30,
        "Prometheus series count",
    )
    unknown = 'sum(vivified_operator_requests_total{caller="unknown",target="unknown"})'
    eventually(lambda: (prom.value(unknown) or 0) >= 1003, 30, "the unauthenticated calls")


@needs_prometheus
def test_egress_series(core: Core, prom: Prometheus) -> None:
    eg = core.egress
    port = eg.up.http_port
    with httpx.Client(proxy=eg.proxy_url("alpha"), trust_env=False, timeout=15) as c:
        for i in range(3):
            r = c.get(f"http://api.example.com:{port}/hello/{i}")
            assert r.status_code == 200, r.text
        r = c.get(f"http://blocked.example.com:{port}/")
        assert r.status_code == 403, r.text
        blocked = r.headers.get("x-vivified-egress-error")
    with httpx.Client(proxy=eg.proxy_url("alpha", token="wrong"), trust_env=False, timeout=15) as c:
        r = c.get(f"http://api.example.com:{port}/")
        assert r.status_code == 407, r.text
        bad_auth = r.headers.get("x-vivified-egress-error")
    prom.wait_value(
        'sum(vivified_egress_decisions_total{plugin="alpha",action="request",decision="allow"})',
        3,
    )
    prom.wait_value(
        f'sum(vivified_egress_decisions_total{{plugin="alpha",decision="deny",reason="{blocked}"}})',
        1,
    )
    prom.wait_value(
        f'sum(vivified_egress_decisions_total{{plugin="unknown",reason="{bad_auth}"}})', 1
    )
    assert (prom.value('sum(vivified_egress_bytes_total{plugin="alpha",direction="in"})') or 0) > 0
    assert prom.value("vivified_egress_tunnels_open") == 0
    assert prom.value("vivified_egress_upstream_tls_failures_total") == 0
    labels = {m.get("plugin") for m, _ in prom.query("vivified_egress_decisions_total")}
    assert labels <= {"alpha", "unknown"}
