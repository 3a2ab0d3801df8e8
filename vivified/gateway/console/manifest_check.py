"""Manifest check: paste a manifest, see every problem with its JSON pointer — the
validator `vivified validate` runs (no scope needed beyond being signed in)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from vivified.gateway.console.context import Ctx, page
from vivified.registry.manifest.validator import Problem, validate_manifest


def check_text(text: str) -> dict[str, Any]:
    """`{"ok", "errors", "warnings"}` of a manifest's text, as `vivified validate --json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        bad = Problem("", "malformed_json", f"not valid JSON at {where}: {exc.msg}")
        return {"ok": False, "errors": [bad.to_dict()], "warnings": []}
    except RecursionError:
        bad = Problem("", "malformed_json", "the JSON is nested too deeply")
        return {"ok": False, "errors": [bad.to_dict()], "warnings": []}
    result = validate_manifest(data)
    return {
        "ok": not result.errors,
        "errors": [p.to_dict() for p in result.errors],
        "warnings": [p.to_dict() for p in result.warnings],
    }


@page()
async def manifest_page(ctx: Ctx) -> Response:
    """The form."""
    return ctx.render("manifest_check.html", text="", result=None)


@page()
async def check(ctx: Ctx) -> Response:
    """Validate the pasted manifest; a refused one answers 422 with its problems."""
    text = ctx.form.get("manifest", "")
    result = check_text(text)
    return ctx.render(
        "manifest_check.html", status=200 if result["ok"] else 422, text=text, result=result
    )
