"""`vivified validate FILE...` output and exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from support.manifests import SEED_USER_MANAGEMENT, seed

from vivified.registry.manifest.cli import validate_files


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def run(paths: list[str], *, as_json: bool) -> tuple[int, str]:
    out = io.StringIO()
    code = validate_files(paths, as_json=as_json, out=out)
    return code, out.getvalue()


def test_valid_file_exits_zero(tmp_path: Path) -> None:
    good = write(tmp_path, "good.json", SEED_USER_MANAGEMENT)
    code, text = run([good], as_json=False)
    assert code == 0
    assert text == f"{good}: ok\n"


def test_broken_manifest_lists_each_problem(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", seed(id="Bad", traits=["admin"], version="x"))
    code, text = run([bad], as_json=False)
    assert code == 1
    lines = text.splitlines()
    assert lines[0] == f"{bad}: 4 problem(s)"
    assert any(line.startswith("  error /id invalid_id: ") for line in lines)
    assert any(line.startswith("  error /version invalid_version: ") for line in lines)
    assert any(line.startswith("  error /traits/0 forbidden_trait: ") for line in lines)


def test_json_output(tmp_path: Path) -> None:
    good = write(tmp_path, "good.json", SEED_USER_MANAGEMENT)
    nodesc = {k: v for k, v in SEED_USER_MANAGEMENT.items() if k != "description"}
    warned = write(tmp_path, "warned.json", nodesc)
    bad = write(tmp_path, "bad.json", seed(security={"authentication_required": False}))
    code, text = run([good, warned, bad], as_json=True)
    assert code == 1
    body = json.loads(text)
    files = {f["file"]: f for f in body["files"]}
    assert files[good] == {"file": good, "ok": True, "errors": [], "warnings": []}
    assert files[warned]["ok"] is True
    assert [w["code"] for w in files[warned]["warnings"]] == ["missing_description"]
    assert {(e["path"], e["code"]) for e in files[bad]["errors"]} == {
        ("/security/authentication_required", "authentication_not_required"),
        ("/security/data_classification", "missing_field"),
    }


def test_malformed_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "id": "abc",\n  oops\n}', encoding="utf-8")
    code, text = run([str(path)], as_json=True)
    assert code == 1
    (entry,) = json.loads(text)["files"]
    (error,) = entry["errors"]
    assert error["code"] == "malformed_json"
    assert "line 3, column 3" in error["message"]


def test_unreadable_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    code, text = run([missing], as_json=False)
    assert code == 1
    assert text.startswith(f"{missing}: 1 problem(s)\n  error / unreadable: ")


def test_not_utf8_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"name": "\xff"}')
    code, text = run([str(path)], as_json=True)
    assert code == 1
    assert json.loads(text)["files"][0]["errors"][0]["code"] == "unreadable"


def test_all_valid_files_exit_zero(tmp_path: Path) -> None:
    a = write(tmp_path, "a.json", SEED_USER_MANAGEMENT)
    b = write(tmp_path, "b.json", seed(id="other-users"))
    assert run([a, b], as_json=True)[0] == 0
