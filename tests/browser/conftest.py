"""Real headless Chromium (Debian's, driven by Playwright) against a real running hub.

No browser is ever downloaded: Playwright's own driver talks to /usr/bin/chromium. Without that
Chromium the tests fail, they never skip. Every step's screenshot lands in
`test-artifacts/screenshots/<test>-<step>.png`. Chromium runs in a network namespace of its
own, out of reach of the other worker's Docker bridges (harness/browser_network.py).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

from harness.browser import DESKTOP
from harness.browser_network import browser_network
from tests.harness import ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DOCS_IMAGES = ROOT / "docs" / "images"
#: Flags for Chromium as root in a container, with nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    """Playwright's driver process, for one test module.

    Playwright's sync API keeps an asyncio loop running in this thread while it is open, which
    stops pytest-asyncio from running async tests; ending it with the module lets the async
    tests of other modules (tests/billing) run in the same session.
    """
    with sync_playwright() as driver:
        yield driver


@contextmanager
def launch_chromium(driver: Playwright, args: Sequence[str] = ()) -> Iterator[Browser]:
    """Debian's headless Chromium with :data:`CHROMIUM_ARGS` and ``args``, in a network
    namespace of its own that reaches only this machine's loopback, through a proxy that takes
    every host name for this machine (harness/browser_network.py). Fails (never skips) when
    Chromium is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium chromium-driver")
    with browser_network(CHROMIUM) as network:
        # launch() gives every run a fresh temporary profile (its own --user-data-dir).
        browser = driver.chromium.launch(
            executable_path=str(network.executable),
            headless=True,
            args=[*CHROMIUM_ARGS, *network.args, *args],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def chromium(playwright_driver: Playwright) -> Iterator[Browser]:
    """Debian's headless Chromium (:func:`launch_chromium`)."""
    with launch_chromium(playwright_driver) as browser:
        yield browser


def new_context(
    chromium: Browser, *, locale: str = "en-US", viewport: ViewportSize = DESKTOP
) -> BrowserContext:
    """A fresh cookie jar in ``locale`` (which sets Accept-Language), at ``viewport``'s size."""
    context = chromium.new_context(locale=locale, viewport=viewport)
    context.set_default_timeout(60_000)
    return context


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    """An English-speaking visitor with no cookies."""
    ctx = new_context(chromium)
    yield ctx
    ctx.close()


class Shots:
    """Numbered screenshots of one test's steps."""

    def __init__(self, test_name: str) -> None:
        self.test = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name).strip("-")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def take(self, page: Page, step: str) -> Path:
        """Save a full-page screenshot of ``page`` as ``<test>-<nn>-<step>.png``."""
        self.count += 1
        path = SCREENSHOTS / f"{self.test}-{self.count:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    @staticmethod
    def publish(path: Path, name: str) -> None:
        """Copy a screenshot to `docs/images/` for the README."""
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / name)


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    """Screenshots named after the running test."""
    return Shots(request.node.name)
