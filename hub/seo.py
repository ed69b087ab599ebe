"""Being found: canonical addresses, sharing tags, schema.org data, `sitemap.xml`, `robots.txt`.

Every absolute address comes from the one configured public URL (``hub.public_url``, through
:meth:`hub.settings.Settings.absolute_url`), never from a request's Host header: a forged Host
must not put someone else's site into our canonical links or sitemap.

A page exists once per language on the same path (the language is negotiated, or chosen with
``?lang=``). Its canonical address is the bare path for English and ``?lang=zh-CN`` for
Chinese, so each language version is its own page for a search engine, and every version lists
the others as ``hreflang`` alternates. Depending only on the path and the language, these tags
are safe in the anonymous pages the service keeps rendered.

`robots.txt` and `sitemap.xml` must live at the site's root. The LearnHub service serves them
(at the Hub's base URL, ``{base}robots.txt``, and under its own prefix) and
:func:`site_root_routes` gives the proxy two routes from the root to the service (JupyterHub's
``Proxy.extra_routes``, which the Hub keeps in the proxy like its own routes). So they work on
the demo, which has no edge, and behind the TLS edge, which passes every path on to the proxy.
With a base URL other than ``/`` the site's root is not LearnHub's: whoever serves it must
pass those two paths on (a crawler reads only ``/robots.txt``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlparse
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

from hub.courses import Course
from hub.i18n import LANGUAGES, LOCALES
from hub.i18n.money import major_units
from hub.settings import Settings

#: Files a search engine looks for at the site's root, each served by the LearnHub service.
SITE_ROOT_FILES = ("robots.txt", "sitemap.xml")


def language_url(url: str, lang: str) -> str:
    """The address of ``url`` in ``lang``: itself in the default language, else ``?lang=``."""
    return url if lang == LANGUAGES[0] else f"{url}?lang={lang}"


@dataclass(frozen=True)
class PageMeta:
    """What a public page tells search engines and link previews about itself."""

    #: The page's title (without the site name).
    title: str
    #: One or two sentences: ``<meta name=description>``, ``og:description``.
    description: str
    #: The page's absolute address in the default language (no query).
    url: str
    #: The language the page is in (``en``, ``zh-CN``).
    lang: str
    #: Open Graph type: ``website`` for the catalog, ``article`` for a course or lesson.
    og_type: str = "website"

    @property
    def canonical(self) -> str:
        """This language version's own address."""
        return language_url(self.url, self.lang)

    @property
    def alternates(self) -> list[tuple[str, str]]:
        """``(hreflang, address)`` of every language version, and ``x-default``."""
        pairs = [(code, language_url(self.url, code)) for code in LANGUAGES]
        return [*pairs, ("x-default", self.url)]

    @property
    def og_locale(self) -> str:
        """Open Graph's locale form (``en``, ``zh_CN``)."""
        return LOCALES[self.lang]


def short_description(text: str, limit: int = 160) -> str:
    """``text`` on one line, at most ``limit`` characters (cut at a word, with "…")."""
    flat = " ".join(text.replace("**", "").split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1].rsplit(" ", 1)[0] if " " in flat[: limit - 1] else flat[: limit - 1]
    return cut.rstrip(",.;:") + "…"


def json_ld(data: dict[str, object]) -> Markup:
    """``data`` as the body of a ``<script type="application/ld+json">`` element.

    ``<``, ``>`` and ``&`` are written as JSON escapes, so no text from a `course.yaml` can close
    the element or start markup (the browser never runs it; it is data for crawlers).
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for the script-data context


def course_data(
    course: Course, url: str, site_name: str, site_url: str, preview_url: str | None
) -> dict[str, object]:
    """schema.org ``Course`` for a course page (Google's course info: name, description,
    provider, offers, an online instance)."""
    price = major_units(course.price.amount, course.price.currency)
    data: dict[str, object] = {
        "@context": "https://schema.org",
        "@type": "Course",
        "name": course.title,
        "description": short_description(course.summary, 500),
        "courseCode": course.id,
        "url": url,
        "provider": {"@type": "Organization", "name": site_name, "url": site_url},
        "offers": {
            "@type": "Offer",
            "category": "Free" if course.price.amount == 0 else "Paid",
            "price": str(price),
            "priceCurrency": course.price.currency.upper(),
            "url": url,
        },
        "hasCourseInstance": {"@type": "CourseInstance", "courseMode": "Online"},
    }
    if course.syllabus:
        data["syllabusSections"] = [{"@type": "Syllabus", "name": item} for item in course.syllabus]
    if course.outcomes:
        data["teaches"] = list(course.outcomes)
    if preview_url:
        data["hasPart"] = {
            "@type": "LearningResource",
            "url": preview_url,
            "isAccessibleForFree": True,
        }
    return data


def sitemap_xml(urls: Iterable[str]) -> str:
    """A sitemap of ``urls`` (each the default-language address), with every language version
    as an ``xhtml:link`` alternate."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        'xmlns:xhtml="http://www.w3.org/1999/xhtml">',
    ]
    for url in urls:
        lines.append(f"  <url><loc>{escape(url)}</loc>")
        for code in LANGUAGES:
            href = quoteattr(language_url(url, code))
            lines.append(f'    <xhtml:link rel="alternate" hreflang="{code}" href={href}/>')
        lines.append("  </url>")
    lines.append("</urlset>")
    return "\n".join(lines) + "\n"


def robots_txt(settings: Settings, base: str, prefix: str) -> str:
    """What crawlers may read: the catalog, course pages and preview lessons; not the Hub's
    pages (``{base}hub/``), members' servers, Q&A (members only) or the rest of the service
    (``prefix``)."""
    sitemap = settings.absolute_url(f"{base}sitemap.xml")
    return "\n".join(
        [
            "User-agent: *",
            f"Allow: {prefix}$",
            f"Allow: {prefix}courses/",
            f"Disallow: {prefix}courses/*/questions",
            f"Disallow: {prefix}",
            f"Disallow: {base}hub/",
            f"Disallow: {base}user/",
            "",
            f"Sitemap: {sitemap}",
            "",
        ]
    )


def site_root_routes(settings: Settings, service_url: str) -> dict[str, str]:
    """``Proxy.extra_routes``: `robots.txt` and `sitemap.xml` at the site's root, to the service.

    configurable-http-proxy forwards the whole request path to the target, so the service gets
    ``{base}robots.txt`` itself and answers it on that path (besides ``{prefix}robots.txt``).
    With user subdomains the routes carry the Hub's host, as JupyterHub's own routes do then,
    so a learner's subdomain keeps its own paths.
    """
    base = urlparse(settings.hub.bind_url).path
    host = (urlparse(settings.subdomain_host).hostname or "") if settings.subdomain_host else ""
    return {f"{host}{base}{name}/": service_url for name in SITE_ROOT_FILES}
