"""`vivified new plugin`: the generated project validates and its own tests pass offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def vivified(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def project_tests(folder: Path) -> subprocess.CompletedProcess[str]:
    """The generated tests, with the venv's pytest, warnings as errors, no core running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    env["PYTHONPATH"] = str(ROOT / "sdk")  # vivified_sdk as a user would have it installed
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio",
         "-W", "error", "--rootdir", str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "passed", "traits", "events"),
    [
        pytest.param([], 4, ["audit_required"], None, id="plain"),
        pytest.param(
            ["--contract", "NotificationPlugin", "--publishes", "MessageSent"],
            4,
            ["audit_required"],
            {"publishes": ["MessageSent"], "subscribes": []},
            id="publisher",
        ),
        pytest.param(
            ["--subscribes", "UserCreated"],
            5,
            ["handles_pii", "audit_required"],
            {"publishes": [], "subscribes": ["UserCreated"]},
            id="pii-subscriber",
        ),
    ],
)
def test_generated_project_validates_and_its_tests_pass(
    tmp_path: Path, args: list[str], passed: int, traits: list[str], events: object
) -> None:
    made = vivified("new", "plugin", "notes-keeper", *args, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "notes-keeper"
    for name in ("manifest.json", "app.py", "main.py", "docs.md", "Dockerfile", "README.md",
                 "tests/test_app.py", "tests/conftest.py"):  # fmt: skip
        assert (folder / name).is_file(), name
    checked = vivified("validate", "manifest.json", cwd=folder)
    assert checked.returncode == 0, checked.stdout
    assert "manifest.json: ok" in checked.stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["traits"] == traits
    assert manifest.get("events") == events
    if "--contract" in args:
        assert manifest["contracts"] == ["NotificationPlugin"]
    if "--subscribes" in args:
        assert manifest["endpoints"]["events"] == "/events"
        assert "pii" in manifest["security"]["data_classification"]
    ran = project_tests(folder)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"{passed} passed" in ran.stdout


def test_dir_option_places_the_project(tmp_path: Path) -> None:
    made = vivified("new", "plugin", "ledger-sync", "--dir", "sub/where", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert json.loads((tmp_path / "sub/where/manifest.json").read_text())["id"] == "ledger-sync"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["Bad_Name"], "is not a plugin id", id="bad-id"),
        pytest.param(["ab"], "is not a plugin id", id="too-short"),
        pytest.param(["admin"], "reserved_id", id="reserved-id"),
        pytest.param(["okay-name", "--subscribes", "NoSuchEvent"], "unknown", id="unknown-event"),
        pytest.param(["okay-name", "--contract", "not a contract"], "contract", id="bad-contract"),
    ],
)
def test_refusals_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    made = vivified("new", "plugin", *args, cwd=tmp_path)
    assert made.returncode == 2
    assert message in made.stderr
    assert "Traceback" not in made.stderr
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "notes-keeper").mkdir()
    (tmp_path / "notes-keeper" / "keep.txt").write_text("mine")
    made = vivified("new", "plugin", "notes-keeper", cwd=tmp_path)
    assert made.returncode == 2
    assert "not empty" in made.stderr
    assert sorted(p.name for p in (tmp_path / "notes-keeper").iterdir()) == ["keep.txt"]
