"""Treat `localhost` and `*.localhost` in this process as browsers do.

With subdomains on, each user server is its own host (`<user>.localhost:<port>`), the Hub is
`localhost:<port>`. Two browser rules the harness's Python clients lack:

- Chromium and curl resolve every `*.localhost` name to loopback; glibc only knows `localhost`
  itself. :func:`resolve_localhost_subdomains` adds the browsers' rule to this process, so
  clients reach user servers at their real URLs, with the real Host header.
- JupyterHub sets its session-id cookie with `Domain=localhost` so that it is shared with the
  servers' subdomains; browsers keep such a cookie, Python's cookie jar refuses a domain
  without an inner dot. :class:`BrowserCookieJar` keeps it and sends it to `localhost` and
  its subdomains.
"""

from __future__ import annotations

import copy
import http.cookiejar
import socket
import urllib.parse
import urllib.request
from typing import Any

_original_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.rstrip(".").lower().endswith(".localhost"):
        host = "127.0.0.1"
    return _original_getaddrinfo(host, *args, **kwargs)


def resolve_localhost_subdomains() -> None:
    """Make `*.localhost` resolve to 127.0.0.1 in this process (idempotent)."""
    socket.getaddrinfo = _getaddrinfo


def _on_localhost(request: urllib.request.Request) -> bool:
    host = (urllib.parse.urlparse(request.get_full_url()).hostname or "").lower()
    return host == "localhost" or host.endswith(".localhost")


class LocalhostCookiePolicy(http.cookiejar.DefaultCookiePolicy):
    """The default policy, plus accepting `Domain=localhost` from `localhost` and its
    subdomains, as a browser does."""

    def set_ok_domain(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        if cookie.domain == ".localhost":
            return _on_localhost(request)
        return super().set_ok_domain(cookie, request)


#: How Python's cookie jar spells the host-only domain of a request to `localhost`.
_LOCALHOST_HOST_ONLY = "localhost.local"


class BrowserCookieJar(http.cookiejar.CookieJar):
    """A cookie jar that keeps `Domain=localhost` cookies and sends them as a browser would.

    httpx copies the jar into a default-policy jar for every request, so the sending side
    cannot be a policy: a `Domain=localhost` cookie is stored twice, as `.localhost` (which the
    default policy sends to `*.localhost`) and as a host-only cookie of `localhost` itself.
    """

    def __init__(self) -> None:
        super().__init__(policy=LocalhostCookiePolicy())

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        super().set_cookie(cookie)
        if cookie.domain == ".localhost":
            mirror = copy.copy(cookie)
            mirror.domain = _LOCALHOST_HOST_ONLY
            mirror.domain_specified = False
            mirror.domain_initial_dot = False
            super().set_cookie(mirror)

    def clear(
        self, domain: str | None = None, path: str | None = None, name: str | None = None
    ) -> None:
        super().clear(domain, path, name)
        if domain == ".localhost":
            try:
                super().clear(_LOCALHOST_HOST_ONLY, path, name)
            except KeyError:
                pass
