"""The Hub's own pages in the visitor's language: the same choice as the service's pages.

JupyterHub renders its templates (login, sign-up, home, spawn, errors) with
``JupyterHub.template_vars``, whose callables receive only the user, never the request. The
language, though, depends on the request (``?lang=``, the ``learnhub-lang`` cookie the
service's toggle sets, ``Accept-Language``). :class:`RequestLanguage`, a tornado output
transform the Hub's application builds for every request just before it starts the request's
handler task, leaves the request in a context variable that the task inherits; the template
variables made by :func:`hub_template_vars` read it there. The transform also remembers an
explicit ``?lang=`` in the same cookie the service sets, so the toggle works the same on every
page of the site.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from functools import cache
from typing import Any
from urllib.parse import urlencode

from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.web import OutputTransform

from hub.i18n import (
    LANG_COOKIE,
    LANGUAGE_NAMES,
    LANGUAGES,
    choose_language,
    normalize,
    plural_translator,
    translator,
)

#: The request the current Hub handler task serves (None outside a request).
_current_request: ContextVar[HTTPServerRequest | None] = ContextVar(
    "learnhub_hub_request", default=None
)


def _query_lang(request: HTTPServerRequest) -> str | None:
    values = request.query_arguments.get("lang")
    return values[-1].decode("utf-8", "replace") if values else None


def _cookie_lang(request: HTTPServerRequest) -> str | None:
    try:
        morsel = request.cookies.get(LANG_COOKIE)
    except Exception:  # a malformed Cookie header must not break the page; ignore the choice
        return None
    return morsel.value if morsel else None


def current_cookie(name: str) -> str | None:
    """The value of cookie ``name`` on the Hub request being served now (None if absent)."""
    request = _current_request.get()
    if request is None:
        return None
    try:
        morsel = request.cookies.get(name)
    except Exception:  # a malformed Cookie header must not break the page
        return None
    return morsel.value if morsel else None


def request_language(request: HTTPServerRequest | None) -> str:
    """The page language of ``request``: ``?lang=``, the cookie, then ``Accept-Language``
    (:func:`hub.i18n.choose_language`, the rule the service's pages use)."""
    if request is None:
        return LANGUAGES[0]
    return choose_language(
        _query_lang(request), _cookie_lang(request), request.headers.get("Accept-Language")
    )


def current_language() -> str:
    """The language of the Hub request being served now."""
    return request_language(_current_request.get())


class RequestLanguage(OutputTransform):
    """Makes the request visible to the Hub's templates, and remembers ``?lang=`` in a cookie.

    Tornado builds the transforms of a request in the task that then creates the handler's
    task, so the context variable set here is the one the handler (and its templates) sees.
    Every request sets it anew, so a keep-alive connection never carries an old one over.
    """

    #: The path of the language cookie: the Hub's base URL, as the service sets it.
    cookie_path = "/"

    def __init__(self, request: HTTPServerRequest) -> None:
        super().__init__(request)
        self._request = request
        _current_request.set(request)

    def transform_first_chunk(
        self, status_code: int, headers: HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, HTTPHeaders, bytes]:
        """Add the cookie for an explicit, valid ``?lang=`` on an HTML page."""
        chosen = normalize(_query_lang(self._request))
        if chosen and headers.get("Content-Type", "").startswith("text/html"):
            headers.add(
                "Set-Cookie",
                f"{LANG_COOKIE}={chosen}; Path={self.cookie_path}; SameSite=Lax",
            )
        return status_code, headers, chunk


@cache
def language_transform(base_url: str) -> type[RequestLanguage]:
    """:class:`RequestLanguage` whose cookie path is the Hub's ``base_url`` (the service uses
    the same path, so one cookie serves both). One class per path, so applying the config twice
    sets the same value."""
    return type("RequestLanguage", (RequestLanguage,), {"cookie_path": base_url})


def lang_url(code: str) -> str:
    """The current Hub page's URL with ``?lang=code`` (other query arguments kept)."""
    request = _current_request.get()
    if request is None:
        return f"?{urlencode({'lang': code})}"
    pairs = [
        (key, value.decode("utf-8", "replace"))
        for key, values in request.query_arguments.items()
        for value in values
        if key != "lang"
    ]
    return f"{request.path}?{urlencode([*pairs, ('lang', code)])}"


def current_path() -> str:
    """The current Hub page's path and query (for a sign-in link that returns here)."""
    request = _current_request.get()
    return request.uri or "" if request is not None else ""


def next_argument() -> str:
    """The current Hub request's ``?next=`` as sent (JupyterHub validates it where it
    redirects; pages only hand it on, URL-encoded)."""
    request = _current_request.get()
    values = request.query_arguments.get("next") if request is not None else None
    return values[-1].decode("utf-8", "replace") if values else ""


def hub_template_vars(catalog_url: str) -> dict[str, Callable[[Any], Any]]:
    """``JupyterHub.template_vars`` for the language and the shared navigation.

    Each value is a callable of the user, called for every render (JupyterHub's contract);
    they read the request from the context variable :class:`RequestLanguage` sets.
    """
    return {
        "lang": lambda user: current_language(),
        "_": lambda user: translator(current_language()),
        "_n": lambda user: plural_translator(current_language()),
        "languages": lambda user: [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        "lang_url": lambda user: lang_url,
        "here": lambda user: current_path(),
        "learnhub_next": lambda user: next_argument(),
        "learnhub_catalog_url": lambda user: catalog_url,
    }
