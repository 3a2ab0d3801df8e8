"""Newcomer docs stay true: the example manifest validates, README shows it, links resolve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLE = ROOT / "docs" / "examples" / "user-management.manifest.json"
DOCS = ("architecture", "api", "operations", "security", "performance")


def test_example_manifest_passes_vivified_validate() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vivified", "validate", "--json", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)["files"][0]
    assert report["ok"] is True
    assert report["errors"] == []
    assert report["warnings"] == []


def test_readme_shows_the_example_manifest_verbatim() -> None:
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    manifests = [json.loads(b) for b in blocks if '"id": "user-management"' in b]
    assert manifests == [json.loads(EXAMPLE.read_text(encoding="utf-8"))]


def test_readme_stays_short() -> None:
    assert len(README.read_bytes()) <= 10 * 1024, "move details to docs/, keep README for newcomers"


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in DOCS])
def test_readme_links_every_doc(name: str) -> None:
    assert (ROOT / "docs" / f"{name}.md").is_file()
    assert f"(docs/{name}.md)" in README.read_text(encoding="utf-8")


def test_readme_links_resolve() -> None:
    targets = re.findall(r"\]\(([^)#]+)\)", README.read_text(encoding="utf-8"))
    missing = [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()]
    assert missing == []
