"""scripts/bench_table.py: the rows the bench suites emit and the one Markdown table they make."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import bench_table  # the scripts are not a package: found through the path above

SCRIPTS = Path(bench_table.__file__).parent

SPEED = "machine speed: a 10M-step Python loop takes 0.30 s (lower is faster)"
HEADER = "| suite | scenario | rate | reference | ratio | target | met |"


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "suite": "operator",
        "scenario": "lane vs direct",
        "rate": "3,196/s",
        "reference": "direct 23,454/s",
        "ratio": 0.1363,
        "target": ">= 0.3",
        "met": False,
    }
    return base | changes


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        pytest.param(
            {},
            "| operator | lane vs direct | 3,196/s | direct 23,454/s | 0.136 | >= 0.3 | no |",
            id="target-missed-is-no",
        ),
        pytest.param(
            {"ratio": 1.294, "met": True},
            "| operator | lane vs direct | 3,196/s | direct 23,454/s | 1.29 | >= 0.3 | yes |",
            id="target-met-is-yes",
        ),
        pytest.param(
            {"ratio": None, "met": None, "target": "—"},
            "| operator | lane vs direct | 3,196/s | direct 23,454/s | — | — | — |",
            id="information-row-shows-dashes",
        ),
        pytest.param(
            {"scenario": "a | b\nc", "reference": ""},
            "| operator | a \\| b c | 3,196/s | — | 0.136 | >= 0.3 | no |",
            id="pipes-escaped-breaks-joined-empty-is-dash",
        ),
        pytest.param(
            {"ratio": 12345.6},
            "| operator | lane vs direct | 3,196/s | direct 23,454/s | 12,346 | >= 0.3 | no |",
            id="large-ratio-has-no-exponent",
        ),
    ],
)
def test_render_row(changes: dict[str, Any], line: str) -> None:
    lines = bench_table.render([row(**changes)], SPEED).splitlines()
    assert lines == [SPEED, "", HEADER, "|---|---|---|---|---|---|---|", line]


def test_render_keeps_the_emitted_order() -> None:
    text = bench_table.render([row(suite="registry"), row(suite="config")], SPEED)
    assert [ln.split(" | ")[0] for ln in text.splitlines()[4:]] == ["| registry", "| config"]


def test_emit_appends_json_lines_to_bench_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "nested" / "rows.jsonl"
    monkeypatch.setenv("BENCH_RESULTS", str(target))
    for suite in ("registry", "config"):
        bench_table.emit(suite, "s", rate="1/s", reference="—", ratio=None, target="—", met=None)
    lines = target.read_text().splitlines()
    assert [json.loads(line)["suite"] for line in lines] == ["registry", "config"]
    assert bench_table.load(target) == [
        {
            "suite": s,
            "scenario": "s",
            "rate": "1/s",
            "reference": "—",
            "ratio": None,
            "target": "—",
            "met": None,
        }
        for s in ("registry", "config")
    ]


def test_results_default_to_the_ignored_artifacts_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_RESULTS", raising=False)
    root = SCRIPTS.parent
    assert bench_table.results_path() == root / ".artifacts" / "bench" / "rows.jsonl"
    assert ".artifacts/" in (root / ".gitignore").read_text().splitlines()


def test_main_writes_and_prints_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(row(met=True)) + "\n")
    monkeypatch.setattr(bench_table, "machine_speed", lambda: SPEED)
    out = tmp_path / "results.md"
    bench_table.main([str(rows), str(out), "--command", "scripts/bench operator"])
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert text.startswith("`scripts/bench operator`, ")
    assert f"\n\n{SPEED}\n\n{HEADER}\n" in text
    assert text.rstrip().endswith("| >= 0.3 | yes |")


def test_main_says_when_no_suite_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_table, "machine_speed", lambda: SPEED)
    out = tmp_path / "results.md"
    bench_table.main([str(tmp_path / "missing.jsonl"), str(out)])
    assert out.read_text().rstrip().endswith("(no suite reported a row)")
    assert capsys.readouterr().out == out.read_text()


@pytest.mark.parametrize(
    ("minimum", "target", "met"),
    [
        pytest.param(0.3, ">= 0.3", False, id="below-the-least-ratio"),
        pytest.param(0.1, ">= 0.1", True, id="above-the-least-ratio"),
        pytest.param(None, "—", None, id="information-only"),
    ],
)
def test_emit_ratio(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    minimum: float | None,
    target: str,
    met: bool | None,
) -> None:
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "rows.jsonl"))
    bench_table.emit_ratio("operator", "s", 3196.4, 23454.0, "req/s", "direct", minimum)
    [got] = bench_table.load(tmp_path / "rows.jsonl")
    assert got["rate"] == "3,196 req/s"
    assert got["reference"] == "direct 23,454 req/s"
    assert got["ratio"] == pytest.approx(3196.4 / 23454.0)
    assert (got["target"], got["met"]) == (target, met)


@pytest.mark.parametrize(
    ("p99", "rate", "met"),
    [
        pytest.param(119.04, "p99 119 ms (p50 12 ms)", True, id="under-the-limit"),
        pytest.param(2721.7, "p99 2,722 ms (p50 12 ms)", False, id="over-the-limit"),
        pytest.param(500.0, "p99 500 ms (p50 12 ms)", True, id="at-the-limit"),
    ],
)
def test_emit_latency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, p99: float, rate: str, met: bool
) -> None:
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "rows.jsonl"))
    bench_table.emit_latency("config", "s", p99, reference="r", limit_ms=500, detail=" (p50 12 ms)")
    [got] = bench_table.load(tmp_path / "rows.jsonl")
    assert (got["rate"], got["target"], got["met"], got["ratio"]) == (
        rate,
        "p99 <= 500 ms",
        met,
        None,
    )
