"""Helpers of the console tests: the console under test, sign-in, axe-core, screenshots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Page
from support.procs import ADMIN_TOKEN, CoreProcess, admin_headers

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).with_name("node")
AXE = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / ".artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


@dataclass
class Console:
    """A gateway process and a browser pointed at its console."""

    gw: CoreProcess
    browser: Browser
    axe: str

    @property
    def url(self) -> str:
        return self.gw.url + "/console"

    def context(self) -> BrowserContext:
        ctx = self.browser.new_context(base_url=self.gw.url)
        # Init scripts run outside the page's CSP: axe is there without weakening the policy.
        ctx.add_init_script(script=self.axe)
        return ctx

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.gw.url, timeout=30, trust_env=False, headers=admin_headers()
        )


def sign_in(page: Page, token: str = ADMIN_TOKEN) -> None:
    page.goto("/console/login")
    page.get_by_label("Admin API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/")


def check_axe(page: Page) -> None:
    """axe-core on the current page: no serious or critical violation."""
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ["violations"]});
            return r.violations.map(v => ({id: v.id, impact: v.impact,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
        }"""
    )
    bad = [v for v in found if v["impact"] in {"serious", "critical"}]
    assert bad == [], bad


def shot(page: Page, name: str) -> Path:
    """Save a screenshot of the page under .artifacts/console/ (git-ignored)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def audit(console: Console, **query: str) -> list[dict[str, Any]]:
    with console.api() as c:
        r = c.get("/admin/audit", params={"limit": "200", **query})
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items
