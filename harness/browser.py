"""A browser-like HTTP client for a running hub: sign up, log in, open a course server."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx

from harness.hub import HubProcess
from harness.names import BrowserCookieJar


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
