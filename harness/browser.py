"""A browser-like HTTP client for a running hub: sign up, log in, open a course server.

Also what real-Chromium tests share: the phone viewport and the automated accessibility check
(axe-core from `tools/node_modules`, run in the page through Playwright's CDP connection).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from harness.hub import ROOT, HubProcess
from harness.names import BrowserCookieJar

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

#: The browser tests' two widths: a desktop, and a phone (an iPhone 12-15's CSS viewport).
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
#: axe-core, installed from npm with the proxy (tools/package.json, exact version).
AXE_SCRIPT = ROOT / "tools" / "node_modules" / "axe-core" / "axe.min.js"
#: Violations at these impacts fail a test; "minor" and "moderate" ones are reported only.
AXE_FAILING_IMPACTS = ("serious", "critical")


@cache
def _axe_source() -> str:
    if not AXE_SCRIPT.exists():
        raise FileNotFoundError(
            f"{AXE_SCRIPT} not found: run scripts/setup.sh (npm installs tools/package.json)"
        )
    return AXE_SCRIPT.read_text(encoding="utf-8")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe-core on ``page`` once it has loaded: its WCAG 2.x A/AA and best-practice rules.

    A check may follow a click that navigated, and an element being visible does not mean the
    page's stylesheets have arrived: axe once measured the unstyled navigation of a phone-width
    page (links 15 px apart, "target-size") that its stylesheet folds away (a full run at
    693f3d4). So the page's ``load`` event comes first.

    The source is evaluated through CDP (``Runtime.evaluate``), which a page's
    Content-Security-Policy does not govern: the service's pages allow no script at all, and
    the check must not need a weaker policy than the one people get.
    """
    page.wait_for_load_state("load")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Inside a function whose `define` is undefined, so a page's AMD loader (the Hub's
        # pages carry require.js) cannot take axe's UMD wrapper instead of `window.axe`. (Not
        # `new Function`: that is eval, which the pages' policy refuses.)
        page.evaluate(
            "(() => { const define = undefined, module = undefined, exports = undefined;\n"
            + _axe_source()
            + "\n})()"
        )
    result: dict[str, Any] = page.evaluate(
        """async () => await window.axe.run(document, {
            runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                            "wcag22aa", "best-practice"]},
            resultTypes: ["violations"],
        })"""
    )
    return list(result["violations"])


def serious_violations(page: Page) -> list[str]:
    """axe's serious and critical violations on ``page``, one readable line per element."""
    lines = []
    for violation in axe_violations(page):
        if violation.get("impact") not in AXE_FAILING_IMPACTS:
            continue
        for node in violation["nodes"]:
            target = " ".join(str(t) for t in node.get("target", []))
            lines.append(
                f"{page.url}: {violation['id']} ({violation['impact']}) at {target}: "
                f"{node.get('failureSummary', '').splitlines()[-1:]}"
            )
    return lines


class Browser:
    """A cookie-keeping HTTP client that signs up and logs in like a person with a browser."""

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.client = httpx.Client(
            base_url=hub.url, follow_redirects=True, timeout=60, cookies=BrowserCookieJar()
        )

    def close(self) -> None:
        self.client.close()

    def _xsrf(self, page: str) -> str:
        response = self.client.get(page)
        response.raise_for_status()
        match = re.search(r'name="_xsrf" value="([^"]+)"', response.text)
        assert match, f"no _xsrf field on {page}"
        return match.group(1)

    def signup(self, username: str, password: str) -> httpx.Response:
        """Create an account; when it may log in at once, the Hub signs it in too."""
        xsrf = self._xsrf("hub/signup")
        return self.client.post(
            "hub/signup",
            data={
                "_xsrf": xsrf,
                "username": username,
                "email": f"{username}@example.org",
                "signup_password": password,
                "signup_password_confirmation": password,
            },
        )

    def login(self, username: str, password: str) -> httpx.Response:
        """Log in as ``username``; a session already signed in (sign-up signs the new member in)
        is signed out first, as the login form is only shown to visitors."""
        if 'name="_xsrf"' not in self.client.get("hub/login").text:
            self.client.get("hub/logout")
        xsrf = self._xsrf("hub/login")
        return self.client.post(
            "hub/login",
            data={
                "_xsrf": xsrf,
                "username": username,
                "password": password,
            },
        )

    def xsrf_headers(self, path: str = "") -> dict[str, str]:
        """The header Jupyter's XSRF check wants for a cookie-authenticated call to `path`.

        The hub and each server set their own `_xsrf` cookie, on their own host (with
        subdomains) and path; as in a browser, the cookie of `path`'s host with the most specific
        path wins. `path` is a URL path on the Hub's host or an absolute URL.
        """
        parsed = urllib.parse.urlparse(self.absolute(path))
        host, path = parsed.hostname or "", parsed.path
        best, best_len = "", -1
        for cookie in self.client.cookies.jar:
            if cookie.name != "_xsrf" or cookie.domain.lstrip(".") not in (host, host + ".local"):
                continue
            cookie_path = urllib.parse.unquote(cookie.path or "/")
            if urllib.parse.unquote(path).startswith(cookie_path) and len(cookie_path) > best_len:
                best, best_len = cookie.value or "", len(cookie_path)
        return {"X-XSRFToken": best}

    def hub_path(self) -> str:
        """The path of the hub's pages, e.g. `/@/space%20word/hub/`."""
        return urllib.parse.urlparse(self.hub.url).path + "hub/"

    def absolute(self, path: str) -> str:
        """A server URL as the Hub API returns it -> an absolute URL.

        With subdomains the Hub gives `http://<user>.localhost:<port>/x/y` already; without,
        `/x/y`, which is on the Hub's host.
        """
        if "://" in path:
            return path
        origin = self.hub.url.split("/", 3)
        return f"{origin[0]}//{origin[2]}{path}"

    def open_server(self, server_url: str) -> httpx.Response:
        """Open JupyterLab like a browser does, completing the OAuth hand-shake with the hub."""
        response = self.client.get(self.absolute(server_url) + "lab")
        response.raise_for_status()
        return response

    def contents(self, server_url: str, path: str = "") -> httpx.Response:
        """GET the Jupyter contents API of a server (after :meth:`open_server`)."""
        return self.client.get(
            self.absolute(server_url) + "api/contents/" + quote(path),
            headers=self.xsrf_headers(server_url),
        )

    def put_file(self, server_url: str, path: str, text: str) -> httpx.Response:
        """Save a text file through the contents API, as JupyterLab does."""
        return self.client.put(
            self.absolute(server_url) + "api/contents/" + quote(path),
            json={"type": "file", "format": "text", "content": text},
            headers=self.xsrf_headers(server_url),
        )

    def spawn_course(self, username: str, course_id: str) -> httpx.Response:
        """Ask the hub to start a course server through the REST API with the user's session."""
        return self.client.post(
            f"hub/api/users/{quote(username, safe='')}/servers/{quote(course_id, safe='')}",
            headers=self.xsrf_headers(self.hub_path()),
        )


@contextmanager
def browser(hub: HubProcess) -> Iterator[Browser]:
    """A fresh browser session."""
    b = Browser(hub)
    try:
        yield b
    finally:
        b.close()
