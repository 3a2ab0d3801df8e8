"""deploy/: the Prometheus alert rules and the Grafana dashboard, checked with promtool.

`promtool check rules` (syntax, PromQL), `promtool test rules` (each alert evaluated against
recorded samples: it fires where it should and not on its neighbour), every alert has such a
test, and every series the rules and the dashboard name is one that core exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from vivified.egress.metrics import EgressMetrics
from vivified.gateway.metrics.series import GatewayMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "vivified-rules.yml"
RULE_TESTS = Path(__file__).with_name("vivified-rules.test.yml")
DASHBOARD = ROOT / "deploy" / "grafana" / "vivified-core.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is missing: install Debian's `prometheus` package (scripts/_venv.sh does)",
)
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def exported_names() -> set[str]:
    """Every sample name core can export (gateway and egress), from the code itself."""
    registries: list[CollectorRegistry] = []
    gateway = GatewayMetrics(SimpleNamespace())  # type: ignore[arg-type]
    assert gateway.registry is not None
    registries.append(gateway.registry)
    egress = EgressMetrics(SimpleNamespace(), [])  # type: ignore[arg-type]
    registries.append(egress.registry)
    names = set()
    for registry in registries:
        for family in registry.collect():
            assert family.name.startswith("vivified_"), family.name
            names |= {family.name + s for s in SUFFIXES[family.type]}
    return names


@needs_promtool
def test_rules_are_valid() -> None:
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in r.stdout


@needs_promtool
def test_every_alert_fires_on_recorded_samples() -> None:
    r = promtool("test", "rules", str(RULE_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_has_a_firing_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    names = {a["alert"] for a in alerts()}
    assert {
        "VivifiedAuditWriterStalled",
        "VivifiedAuditRecordsQuarantined",
        "VivifiedCircuitOpen",
        "VivifiedConsumerLag",
        "VivifiedEgressDenialsSpike",
        "VivifiedPluginUnhealthy",
    } <= names
    assert names == fired == quiet


@pytest.mark.parametrize(
    "source",
    [pytest.param("rules", id="alert-rules"), pytest.param("dashboard", id="grafana-dashboard")],
)
def test_only_exported_series_are_named(source: str) -> None:
    text = RULES.read_text() if source == "rules" else "\n".join(dashboard_exprs())
    used = set(re.findall(r"\bvivified_[a-z_]+", text))
    assert used, "no vivified_ series found"
    assert used - exported_names() == set()


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel query, as a recording rule (Grafana's `$__rate_interval` as 5m)."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    rules = [
        {"record": f"vivified:panel_{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = promtool("check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
