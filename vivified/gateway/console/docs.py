"""Plugins → Docs: every active plugin's documentation page, and one page with its table of
contents (fetched, rendered and sanitised by `vivified.gateway.plugin_docs`)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from sqlmodel import col, select
from starlette.responses import Response

from vivified.gateway.console.context import ConsoleError, Ctx, page
from vivified.gateway.docs_render import RENDERER, render_markdown
from vivified.gateway.params import path_plugin_id
from vivified.registry.store.tables import PluginDoc

REASONS = {
    "docs_off_base": "the page is not under the plugin's base URL",
    "docs_http_status": "the plugin did not answer 200",
    "docs_too_large": "the page is too large",
    "docs_timeout": "the plugin did not answer in time",
    "docs_unreachable": "the plugin could not be reached",
    "docs_not_utf8": "the page is not UTF-8 text",
    "docs_not_text": "the page is not text",
    "docs_redirect_loop": "too many redirects",
}


def reason(code: str) -> str:
    return REASONS.get(code, code or "not fetched yet")


@page("plugins:manage")
async def docs_index(ctx: Ctx) -> Response:
    """Every active plugin that declares a docs page, and whether core has it."""
    active = sorted(
        (v for v in ctx.core.snapshot.current.plugins.values() if v.active),
        key=lambda v: v.id,
    )
    declared = [v for v in active if isinstance(v.manifest.get("docs"), str)]
    async with ctx.core.sessions() as s:
        rows = (
            await s.execute(
                select(PluginDoc.plugin_id, PluginDoc.state, PluginDoc.error, PluginDoc.size)
            )
        ).all()
    cached = {r[0]: r for r in rows}
    items: list[dict[str, Any]] = []
    for v in declared:
        row = cached.get(v.id)
        has_page = row is not None and row[3] > 0
        items.append(
            {
                "id": v.id,
                "name": str(v.manifest.get("name") or v.id),
                "description": str(v.manifest.get("description") or ""),
                "available": has_page,
                "problem": ""
                if row is not None and row[1] == "ok"
                else reason(row[2] if row else ""),
            }
        )
    return ctx.render(
        "docs.html", items=items, without=len(active) - len(declared), active=len(active)
    )


@page("plugins:manage")
async def plugin_docs_page(ctx: Ctx) -> Response:
    """One plugin's page: its table of contents, then the sanitised HTML."""
    pid = path_plugin_id(ctx.request)
    view = ctx.core.snapshot.current.plugins.get(pid)
    if view is None:
        raise ConsoleError(404, "not_found", f"no plugin {pid!r}")
    async with ctx.core.sessions() as s:
        row = (
            await s.execute(select(PluginDoc).where(col(PluginDoc.plugin_id) == pid))
        ).scalar_one_or_none()
    if row is None or not row.markdown:
        declared = isinstance(view.manifest.get("docs"), str)
        detail = (
            f"core has no documentation page of {pid!r} yet"
            + (f" ({reason(row.error)})" if row is not None else "")
            if declared
            else f"the plugin {pid!r} declares no docs page in its manifest"
        )
        raise ConsoleError(404, "no_docs", detail)
    html, toc = row.html, row.toc
    if row.renderer != RENDERER:  # cached by another version: render again with today's rules
        fresh = render_markdown(row.markdown)
        html, toc = fresh.html, fresh.toc
    return ctx.render(
        "plugin_docs.html",
        p={"id": pid, "name": str(view.manifest.get("name") or pid), "status": view.status},
        doc=row,
        body=Markup(html),  # noqa: S704 - sanitised by nh3 in docs_render
        toc=toc,
        problem="" if row.state == "ok" else reason(row.error),
    )
