"""The egress settings page: the one egress document (lane switch, blocklist, response
filters, host overrides, networks, ports, passthrough domains), written through the config
service exactly as `PUT /admin/egress` writes it, with its version as If-Match."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import RedirectResponse, Response

from vivified.config.documents import ConfigError
from vivified.gateway.console.context import Ctx, page
from vivified.gateway.middleware import request_id
from vivified.gateway.problems import Problem, status_of

SCOPE = "egress:manage"
LISTS = ("blocked_domains", "passthrough_domains", "allowed_networks")
MAX_COMMENT = 500


def lines(text: str) -> list[str]:
    """One entry a line (commas also separate); blanks dropped."""
    return [part.strip() for line in text.splitlines() for part in line.split(",") if part.strip()]


def _ports(text: str) -> list[Any]:
    # Not a number stays text: the validator names it with its pointer.
    return [int(p) if p.isascii() and p.isdigit() and len(p) < 7 else p for p in lines(text)]


def _overrides(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            name, _, address = line.partition("=")
            out[name.strip()] = address.strip()
    return out


def to_form(doc: dict[str, Any]) -> dict[str, str]:
    """The document as the form's fields."""
    form = {name: "\n".join(str(x) for x in doc.get(name, [])) for name in LISTS}
    form["allowed_ports"] = "\n".join(str(p) for p in doc.get("allowed_ports", []))
    form["host_overrides"] = "\n".join(
        f"{k} = {v}" for k, v in (doc.get("host_overrides") or {}).items()
    )
    filters = doc.get("response_filters") or {}
    form["response_filters"] = json.dumps(filters, indent=2) if filters else ""
    form["enabled"] = "on" if doc.get("enabled", True) else ""
    return form


def from_form(form: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The form as the document (and the problems only the form can have)."""
    problems: list[dict[str, str]] = []
    doc: dict[str, Any] = {"enabled": form.get("enabled") == "on"}
    for name in LISTS:
        doc[name] = lines(form.get(name, ""))
    doc["allowed_ports"] = _ports(form.get("allowed_ports", ""))
    doc["host_overrides"] = _overrides(form.get("host_overrides", ""))
    raw = form.get("response_filters", "").strip()
    try:
        doc["response_filters"] = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, RecursionError):
        problems.append(
            {"path": "/response_filters", "code": "malformed_json", "message": "not valid JSON"}
        )
    return doc, problems


def expected_version(form: dict[str, str]) -> int | None:
    raw = form.get("version", "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


def stale_message(what: str) -> str:
    return (
        f"Someone else changed {what} while you were editing it, so nothing was saved. "
        "Your edits are kept below: open the page again to see the current version, "
        "then make your change there."
    )


async def _page(ctx: Ctx, status: int = 200, **kw: Any) -> Response:
    got = await ctx.core.config.get_egress()
    defaults: dict[str, Any] = {
        "form": to_form(got.value),
        "version": got.version,
        "errors": [],
        "stale": "",
        "saved": ctx.request.query_params.get("saved", "").isdigit(),
        "comment": "",
    }
    return ctx.render("egress.html", status=status, **(defaults | kw))


@page(SCOPE)
async def egress_page(ctx: Ctx) -> Response:
    """The egress document as a form."""
    return await _page(ctx)


@page(SCOPE)
async def save_egress(ctx: Ctx) -> Response:
    """Write the document with the version the form was loaded at (If-Match)."""
    form = ctx.form
    doc, problems = from_form(form)
    comment = form.get("comment", "").strip()[:MAX_COMMENT]
    kept = {k: form.get(k, "") for k in (*LISTS, "allowed_ports", "host_overrides")}
    kept |= {"response_filters": form.get("response_filters", ""), "enabled": doc["enabled"]}
    if problems:
        return await _page(ctx, 422, form=kept, errors=problems, comment=comment)
    try:
        got = await ctx.core.config.put_egress(
            doc,
            expected=expected_version(form),
            actor=ctx.principal.actor,
            comment=comment,
            request_id=request_id(ctx.request),
        )
    except ConfigError as exc:
        if exc.code == "stale_version":
            return await _page(
                ctx,
                412,
                form=kept,
                version=form.get("version", ""),  # saving again conflicts again: reload first
                stale=stale_message("the egress settings"),
                comment=comment,
            )
        if exc.errors:
            errors = [dict(e) for e in exc.errors]
            return await _page(ctx, status_of(exc), form=kept, errors=errors, comment=comment)
        raise Problem.of(exc) from exc
    return RedirectResponse(f"/console/egress?saved={got.version}", status_code=303)
