"""The settings reference is generated from the `Settings` fields and kept in docs/operations.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from vivified.cli import main
from vivified.config.settings import Settings, SettingsError, load_settings
from vivified.config.settings_doc import (
    END_MARKER,
    START_MARKER,
    SettingsDocError,
    between_markers,
    env_name,
    render_table,
    splice,
    undocumented,
)

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
FIELDS = dataclasses.fields(Settings)
REGENERATE = "run scripts/gen-docs (vivified config docs --write docs/operations.md)"


def test_every_setting_has_a_doc() -> None:
    assert undocumented() == [], "give these fields setting(default, doc, ...) in settings.py"


def test_operations_md_holds_exactly_the_generated_table() -> None:
    assert between_markers(OPERATIONS.read_text(encoding="utf-8")) == render_table(), REGENERATE


def test_the_table_has_one_row_per_setting_with_env_name_and_default() -> None:
    rows = render_table().splitlines()[2:]
    assert len(rows) == len(FIELDS)
    for row, f in zip(rows, FIELDS, strict=True):
        assert row.startswith(f"| `{env_name(f.name)}` | `{f.name}` | "), row
    by_name = dict(zip((f.name for f in FIELDS), rows, strict=True))
    assert "| integer | `8000` | 0 to 65535 |" in by_name["gateway_port"]
    assert "| `token`, `open` |" in by_name["registration"]
    assert "| number | `30` | > 0 |" in by_name["upstream_timeout"]
    assert "Secret: never logged." in by_name["admin_token"]


def _bounded() -> list[Any]:
    cases = []
    for f in FIELDS:
        meta = f.metadata
        if meta.get("choices"):
            cases.append(pytest.param(f.name, meta["choices"][-1], "no-such-choice", id=f.name))
        for key, inside, outside in (
            ("min", lambda v: v, lambda v: v - 1),
            ("max", lambda v: v, lambda v: v + 1),
            ("above", lambda v: v + 0.5, lambda v: v),
        ):
            bound = meta.get(key)
            if bound is not None:
                case = (f.name, inside(bound), outside(bound))
                cases.append(pytest.param(*case, id=f"{f.name}-{key}"))
    return cases


@pytest.mark.parametrize(("name", "accepted", "refused"), _bounded())
def test_documented_bounds_are_the_enforced_ones(name: str, accepted: Any, refused: Any) -> None:
    env = env_name(name)
    assert getattr(load_settings(environ={env: str(accepted)}), name) == accepted
    with pytest.raises(SettingsError):
        load_settings(environ={env: str(refused)})


def test_secret_settings_stay_out_of_repr() -> None:
    secret = "s3cret-admin-token-of-enough-length"
    assert secret not in repr(load_settings(environ={"VIVIFIED_ADMIN_TOKEN": secret}))


def test_cli_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "docs"]) == 0
    assert capsys.readouterr().out == render_table() + "\n"


def test_cli_write_replaces_only_the_marked_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "ops.md"
    doc.write_text(f"# Ops\n\n{START_MARKER}\nold table\n{END_MARKER}\n\nafter\n")
    assert main(["config", "docs", "--write", str(doc)]) == 0
    text = doc.read_text()
    assert text == f"# Ops\n\n{START_MARKER}\n{render_table()}\n{END_MARKER}\n\nafter\n"
    assert "regenerated" in capsys.readouterr().out
    assert main(["config", "docs", "--write", str(doc)]) == 0
    assert "already up to date" in capsys.readouterr().out


@pytest.mark.parametrize(
    "document",
    [
        pytest.param("no markers at all\n", id="no-markers"),
        pytest.param(f"{END_MARKER}\n{START_MARKER}\n", id="reversed"),
        pytest.param(f"{START_MARKER}\n{START_MARKER}\n{END_MARKER}\n", id="two-starts"),
    ],
)
def test_broken_markers_are_refused(
    document: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SettingsDocError):
        splice(document, "table")
    doc = tmp_path / "ops.md"
    doc.write_text(document)
    assert main(["config", "docs", "--write", str(doc)]) == 1
    assert START_MARKER in capsys.readouterr().err
    assert doc.read_text() == document
