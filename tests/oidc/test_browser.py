"""Sign-in with OpenID Connect in Chromium, end to end: the "Sign in with" button, the
provider's login form, the console with exactly the mapped scopes, and sign-out at the
provider (RP-initiated logout) back to the console's sign-in page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from console.browser import CHROMIUM, CHROMIUM_ARGS
from oidc.idp import FixedPortGateway, IdentityProvider
from playwright.sync_api import Browser, Page, expect, sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, gateway: FixedPortGateway) -> Iterator[Page]:
    ctx = browser.new_context(base_url=gateway.url)
    pg = ctx.new_page()
    yield pg
    ctx.close()


def test_sign_in_console_with_mapped_scopes_and_sign_out_at_the_provider(
    page: Page, idp: IdentityProvider, gateway: FixedPortGateway
) -> None:
    page.goto("/console/")
    page.wait_for_url("**/console/login")
    page.get_by_role("link", name=re.compile(r"^Sign in with")).click()
    page.wait_for_url(f"{idp.issuer}/interaction/**")  # at the provider (another site)
    page.get_by_label("Username").fill("erin")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{gateway.url}/console/")
    nav = page.get_by_role("navigation", name="Console")
    # audit:read only: the audit page is offered, nothing that needs another scope
    expect(nav.get_by_role("link", name="Audit")).to_be_visible()
    for needs_other_scope in ("Plugins", "Registration tokens"):
        expect(nav.get_by_role("link", name=needs_other_scope, exact=True)).to_have_count(0)
    expect(page.get_by_text(f"oidc:{idp.issuer}#erin")).to_be_visible()
    page.goto("/console/audit")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Audit")
    page.goto("/console/plugins")
    expect(page.get_by_text("missing_scope")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{idp.issuer}/session/end**")  # RP-initiated logout at the provider
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url(f"{gateway.url}/console/login?ended=signed_out")
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto("/console/")
    page.wait_for_url("**/console/login")
