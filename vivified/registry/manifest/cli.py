"""`vivified validate FILE...`: check manifest files and print every problem."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from vivified.registry.manifest.cycles import cycle_warnings
from vivified.registry.manifest.validator import Problem, validate_manifest


def _load(path: str) -> tuple[object, Problem | None]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, Problem("", "unreadable", f"cannot read {path}: {reason}")
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, Problem(
            "",
            "malformed_json",
            f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
        )
    except RecursionError:
        return None, Problem("", "malformed_json", "the JSON is nested too deeply")


def check_file(path: str) -> dict[str, Any]:
    """The result for one file as `{"file", "ok", "errors", "warnings"}`."""
    data, problem = _load(path)
    if problem is not None:
        errors, warnings = [problem], []
    else:
        result = validate_manifest(data)
        errors, warnings = list(result.errors), list(result.warnings)
    return {
        "file": path,
        "ok": not errors,
        "errors": [p.to_dict() for p in errors],
        "warnings": [p.to_dict() for p in warnings],
    }


def _human(entry: dict[str, Any], out: TextIO) -> None:
    errors, warnings = entry["errors"], entry["warnings"]
    if entry["ok"]:
        suffix = f" ({len(warnings)} warning(s))" if warnings else ""
        out.write(f"{entry['file']}: ok{suffix}\n")
    else:
        out.write(f"{entry['file']}: {len(errors)} problem(s)\n")
    for kind, problems in (("error", errors), ("warning", warnings)):
        for p in problems:
            out.write(f"  {kind} {p['path'] or '/'} {p['code']}: {p['message']}\n")


def _warn_cycles(paths: Sequence[str], results: list[dict[str, Any]]) -> None:
    """Dependency cycles among the manifests validated together, on each file in one."""
    graph: dict[str, list[str]] = {}
    files: dict[str, list[dict[str, Any]]] = {}
    for path, entry in zip(paths, results, strict=True):
        data, problem = _load(path)
        if problem is None and isinstance(data, dict) and isinstance(data.get("id"), str):
            deps = data.get("dependencies")
            graph[data["id"]] = (
                [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []
            )
            files.setdefault(data["id"], []).append(entry)
    for pid, entries in files.items():
        for warning in cycle_warnings(graph, only=pid):
            for entry in entries:
                entry["warnings"].append(warning.to_dict())


def validate_files(paths: Sequence[str], *, as_json: bool, out: TextIO) -> int:
    """Validate each file; 0 when all are valid, else 1."""
    results = [check_file(p) for p in paths]
    _warn_cycles(paths, results)
    if as_json:
        json.dump({"files": results}, out, indent=2)
        out.write("\n")
    else:
        for entry in results:
            _human(entry, out)
    return 0 if all(e["ok"] for e in results) else 1
