"""Browser tests: Debian's Chromium driven by Playwright (never Playwright's own download).

``browser`` launches ``/usr/bin/chromium`` (or ``REALTIME_TEST_CHROMIUM``) headless, with
``--no-sandbox`` when running as root. ``watch(page)`` collects what a page reports that a
test should fail on: console errors, uncaught exceptions and Content-Security-Policy
violations. Screenshots go to ``artifacts/screenshots/`` (``SCREENSHOTS``), which CI keeps.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.support import REPO

CHROMIUM = os.environ.get("REALTIME_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
HAVE_CHROMIUM = Path(CHROMIUM).exists()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        raise RuntimeError(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield launched
        finally:
            await launched.close()


class PageProblems(list[str]):
    """Console errors, page errors and CSP violations of one page, as they happen."""


def watch(page: Page) -> PageProblems:
    problems = PageProblems()
    page.on(
        "console",
        lambda message: (
            problems.append(f"console.{message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    return problems


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
