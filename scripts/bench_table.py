"""Bench results as one Markdown table.

Each suite calls `emit()` once per headline figure: one JSON line appended to the file named by
BENCH_RESULTS (`.artifacts/bench/rows.jsonl` under the repository when unset). `scripts/bench`
gives every run a fresh file and, after the suites, runs this module to render the rows with
the machine-speed line:

    bench_table.py ROWS.jsonl OUT.md [--command "scripts/bench all"]

`ratio` is the figure divided by its reference when both are measured rates in the same run
(None, shown as "—", when the reference is not a measured rate); `met` is whether the target
holds (None, "—", for rows shown for information).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bench_serve import machine_speed

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / ".artifacts" / "bench" / "rows.jsonl"
COLUMNS = ("suite", "scenario", "rate", "reference", "ratio", "target", "met")
NONE = "—"


def results_path() -> Path:
    """Where `emit` appends: $BENCH_RESULTS, else the default under .artifacts/ (git-ignored)."""
    return Path(os.environ.get("BENCH_RESULTS") or DEFAULT_RESULTS)


def emit(
    suite: str,
    scenario: str,
    *,
    rate: str,
    reference: str,
    ratio: float | None,
    target: str,
    met: bool | None,
) -> None:
    """Append one row (a JSON line) to the results file."""
    row = {
        "suite": suite,
        "scenario": scenario,
        "rate": rate,
        "reference": reference,
        "ratio": ratio,
        "target": target,
        "met": met,
    }
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def emit_ratio(
    suite: str,
    scenario: str,
    rate: float,
    reference: float,
    unit: str,
    ref_label: str,
    minimum: float | None,
) -> None:
    """A throughput row: `rate` against a `reference` rate measured in the same run; the
    target is a least ratio (None: shown for information)."""
    ratio = rate / reference
    emit(
        suite,
        scenario,
        rate=f"{rate:,.0f} {unit}",
        reference=f"{ref_label} {reference:,.0f} {unit}",
        ratio=ratio,
        target=NONE if minimum is None else f">= {minimum:g}",
        met=None if minimum is None else ratio >= minimum,
    )


def emit_latency(
    suite: str, scenario: str, p99_ms: float, *, reference: str, limit_ms: float, detail: str = ""
) -> None:
    """A latency row: a p99 in milliseconds against an upper limit; `detail` follows it."""
    emit(
        suite,
        scenario,
        rate=f"p99 {_num(p99_ms)} ms{detail}",
        reference=reference,
        ratio=None,
        target=f"p99 <= {limit_ms:g} ms",
        met=p99_ms <= limit_ms,
    )


def load(path: Path) -> list[dict[str, Any]]:
    """The rows of a results file, in the order they were emitted (none when it is missing)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _num(value: float) -> str:
    """Three significant digits, without an exponent for large values."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return NONE if value is None else _num(value)


def _met(value: bool | None) -> str:
    return NONE if value is None else ("yes" if value else "no")


def _cell(text: object) -> str:
    """Table-safe: no pipes or line breaks inside a cell; empty shows as a dash."""
    s = str(text).replace("|", "\\|").replace("\n", " ").strip()
    return s or NONE


def render(rows: Iterable[Mapping[str, Any]], speed_line: str) -> str:
    """The machine-speed line, then one table row per emitted row."""
    out = [speed_line, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [
            _cell(row.get("suite", "")),
            _cell(row.get("scenario", "")),
            _cell(row.get("rate", "")),
            _cell(row.get("reference", "")),
            _ratio(row.get("ratio")),
            _cell(row.get("target", "")),
            _met(row.get("met")),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render bench rows as one Markdown table.")
    parser.add_argument("rows", type=Path, help="the JSON-lines file the suites emitted to")
    parser.add_argument("out", type=Path, help="the Markdown file to write (replaced)")
    parser.add_argument("--command", default="", help="the command that produced the rows")
    args = parser.parse_args(argv)
    rows = load(args.rows)
    head = f"`{args.command}`, " if args.command else ""
    text = f"{head}{time.strftime('%Y-%m-%d %H:%M %Z')}\n\n{render(rows, machine_speed())}"
    if not rows:
        text += "\n(no suite reported a row)\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()
