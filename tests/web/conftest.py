"""A real headless Chromium (Debian's package) driven by Playwright, and the app over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from tests.conftest import Stack, make_test_app
from tests.support.live_server import serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """The Playwright driver (it never downloads a browser here: we name Debian's)."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium for the whole run."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def live_url(stack: Stack) -> Iterator[str]:
    """The real app over HTTP, on the stack's database and broker (so its worker runs the jobs)."""
    app = make_test_app(stack.database_url, stack.broker_url)
    with serving(app) as url:
        yield url
    app.extensions["trainq.engine"].dispose()


@dataclass
class Problems:
    """Script errors, console errors and refused requests seen by a page."""

    seen: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.seen.append(f"console: {message.text}")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab; the test fails if the page logged an error or a script threw."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = Problems()
    page.on("console", problems.console)
    page.on("pageerror", lambda error: problems.seen.append(f"script: {error}"))
    page.set_default_timeout(30_000)
    yield page
    # A failed live update is shown in the header's notice rather than thrown: count it too.
    notice = page.locator("#api-notice")
    if page.url.startswith("http") and notice.count():
        text = notice.text_content() or ""
        if not notice.is_hidden():
            problems.seen.append(f"notice: {text}")
    context.close()
    assert problems.seen == []
