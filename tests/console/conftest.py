"""Console tests: a real gateway process, real plugins and Debian's Chromium driven by
Playwright (from PyPI; never `playwright install`), with axe-core injected into every page."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from console.browser import AXE, CHROMIUM, CHROMIUM_ARGS, NODE_DIR, Console
from playwright.sync_api import Browser, Page, sync_playwright


@pytest.fixture(scope="session")
def axe_source() -> str:
    """The pinned axe-core (tests/console/node), installed with `npm ci` when missing."""
    if not AXE.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install the pinned axe-core (tests/console/node)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread while it
    # is open, and asyncio tests of other modules (pytest-randomly interleaves modules) could
    # not start their own. Items of one module always run together, so it closes in between.
    assert Path(CHROMIUM).exists(), "install Debian's chromium (scripts/_venv.sh does)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(console: Console) -> Iterator[Page]:
    ctx = console.context()
    pg = ctx.new_page()
    yield pg
    ctx.close()
