"""Being found and the free preview lesson, through the service's app in this process.

No hub: anonymous visitors and crawlers need none, and the pages they get (catalog, course,
preview, `robots.txt`, `sitemap.xml`) are what this checks. The proxy's site-root routes to them
are checked on a real hub in `tests/browser/test_pages_http.py`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import httpx
import nbformat
import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from hub.billing.client import StripeAPI
from hub.courses import Catalog, load_course
from hub.errors import CourseError
from hub.preview import PreviewLessons, clean_lesson_html
from hub.seo import site_root_routes
from hub.service.app import make_app
from hub.service.context import ServiceContext, build_context
from hub.settings import Settings
from hub.store import Database
from hub.store.revisions import upgrade
from tests.harness import ROOT

PUBLIC = "https://learn.example.org/"
COURSE = "python-foundations"


@dataclass
class Site:
    client: httpx.AsyncClient
    ctx: ServiceContext
    courses: Path


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """The service's app on loopback, its public URL https://learn.example.org/, with a copy
    of the demo courses (the tests edit a preview notebook)."""
    courses = tmp_path / "courses"
    shutil.copytree(ROOT / "courses", courses)
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    db = Database(url)
    settings = Settings.model_validate(
        {
            "hub": {"public_url": PUBLIC},
            "payments": {"provider": "stripe"},
            "secrets": {"stripe_secret_key": "sk_test_x", "stripe_webhook_secrets": "whsec_x"},
        }
    )

    async def no_sync() -> None:
        return None

    ctx = build_context(settings, Catalog.load(courses), db, StripeAPI("sk_test_x"), no_sync)
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(make_app(ctx))
    server.add_sockets(sockets)
    base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    # A forged Host must not leak into any absolute address.
    async with httpx.AsyncClient(
        base_url=base, headers={"Host": "evil.example"}, timeout=120
    ) as client:
        try:
            yield Site(client, ctx, courses)
        finally:
            server.stop()
            await ctx.monitor.aclose()
            db.dispose()


class Head(HTMLParser):
    """The <meta>, <link> and JSON-LD of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.links: list[dict[str, str]] = []
        self.json_ld: list[str] = []
        self._in_ld = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "meta" and ("name" in a or "property" in a):
            self.meta[a.get("name") or a["property"]] = a.get("content", "")
        elif tag == "link":
            self.links.append(a)
        elif tag == "script" and a.get("type") == "application/ld+json":
            self._in_ld = True
            self.json_ld.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_ld = False

    def handle_data(self, data: str) -> None:
        if self._in_ld:
            self.json_ld[-1] += data


def head_of(html: str) -> Head:
    parser = Head()
    parser.feed(html)
    return parser


async def test_course_page_describes_itself_for_search_and_sharing(site: Site) -> None:
    page = await site.client.get(f"/services/learnhub/courses/{COURSE}")
    assert page.status_code == 200
    head = head_of(page.text)
    url = f"{PUBLIC}services/learnhub/courses/{COURSE}"
    assert head.meta["description"].startswith("Write Python the way experienced")
    assert head.meta["og:url"] == url and head.meta["og:type"] == "article"
    assert head.meta["og:title"] == "Python Foundations for Working Programmers"
    assert head.meta["twitter:card"] == "summary" and head.meta["twitter:description"]
    canonical = [link["href"] for link in head.links if link.get("rel") == "canonical"]
    assert canonical == [url]
    alternates = {a["hreflang"]: a["href"] for a in head.links if a.get("rel") == "alternate"}
    assert alternates == {"en": url, "zh-CN": f"{url}?lang=zh-CN", "x-default": url}
    assert "evil.example" not in page.text
    (data,) = [json.loads(text) for text in head.json_ld]
    assert data["@type"] == "Course" and data["name"] == head.meta["og:title"]
    assert data["offers"] == {
        "@type": "Offer",
        "category": "Paid",
        "price": "49.00",
        "priceCurrency": "USD",
        "url": url,
    }
    assert data["provider"]["url"] == PUBLIC
    assert data["hasPart"]["url"] == f"{url}/preview"
    assert data["hasCourseInstance"]["courseMode"] == "Online"
    # The course page links its free lesson.
    assert f'href="/services/learnhub/courses/{COURSE}/preview"' in page.text

    zh = await site.client.get(f"/services/learnhub/courses/{COURSE}?lang=zh-CN")
    zh_head = head_of(zh.text)
    assert zh_head.meta["og:locale"] == "zh_CN" and "免费试读一课" in zh.text
    assert [c["href"] for c in zh_head.links if c.get("rel") == "canonical"] == [
        f"{url}?lang=zh-CN"
    ]


async def test_catalog_describes_itself_and_private_pages_ask_not_to_be_indexed(
    site: Site,
) -> None:
    catalog = head_of((await site.client.get("/services/learnhub/")).text)
    assert catalog.meta["og:url"] == f"{PUBLIC}services/learnhub/"
    assert "2 courses" in catalog.meta["description"]
    assert "robots" not in catalog.meta
    missing = await site.client.get("/services/learnhub/courses/no-such-course")
    assert missing.status_code == 404
    assert head_of(missing.text).meta["robots"] == "noindex"


async def test_the_pages_one_style_element_is_the_one_their_policy_allows(site: Site) -> None:
    """The navigation's rules are included into base.html's <style>; the CSP hash must be of
    the rendered text, or Chromium drops the whole element (and the phone menu with it)."""
    page = await site.client.get("/services/learnhub/")
    (style,) = re.findall(r"<style>(.*?)</style>", page.text, re.S)
    assert ".learnhub-nav-toggle:checked" in style
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page.headers["Content-Security-Policy"]


async def test_robots_and_sitemap_name_only_the_public_pages(site: Site) -> None:
    robots = await site.client.get("/robots.txt")
    assert robots.status_code == 200 and robots.headers["Content-Type"].startswith("text/plain")
    lines = robots.text.splitlines()
    assert "Disallow: /hub/" in lines and "Disallow: /user/" in lines
    assert "Allow: /services/learnhub/courses/" in lines
    assert "Disallow: /services/learnhub/courses/*/questions" in lines
    assert f"Sitemap: {PUBLIC}sitemap.xml" in lines

    sitemap = await site.client.get("/sitemap.xml")
    assert sitemap.status_code == 200
    root = ElementTree.fromstring(sitemap.content)
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9", "x": "http://www.w3.org/1999/xhtml"}
    locs = [loc.text for loc in root.findall("s:url/s:loc", ns)]
    base = f"{PUBLIC}services/learnhub/"
    assert locs == [
        base,
        f"{base}courses/algorithms-in-python",
        f"{base}courses/algorithms-in-python/preview",
        f"{base}courses/python-foundations",
        f"{base}courses/python-foundations/preview",
    ]
    first = root.find("s:url", ns)
    assert first is not None
    assert {link.get("hreflang"): link.get("href") for link in first.findall("x:link", ns)} == {
        "en": base,
        "zh-CN": f"{base}?lang=zh-CN",
    }


async def test_preview_lesson_is_public_rendered_once_and_again_when_it_changes(
    site: Site,
) -> None:
    path = f"/services/learnhub/courses/{COURSE}/preview"
    page = await site.client.get(path)
    assert page.status_code == 200, page.text
    assert 'id="learnhub-preview"' in page.text and 'id="login"' in page.text
    assert "<h1>1. The Python data model</h1>" in page.text
    assert '<span class="k">def</span>' in page.text  # highlighted code
    head = head_of(page.text)
    assert head.meta["og:url"] == f"{PUBLIC}services/learnhub/courses/{COURSE}/preview"
    assert any(s["href"] == "/services/learnhub/lesson.css" for s in head.links)
    css = await site.client.get("/services/learnhub/lesson.css")
    assert css.status_code == 200 and ".highlight .k" in css.text
    assert (await site.client.get(path)).text == page.text
    assert site.ctx.previews.renders == 1

    notebook_path = site.courses / COURSE / "materials" / "01-data-model.ipynb"
    notebook = nbformat.read(notebook_path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell("## Fresh from the instructor"))
    nbformat.write(notebook, notebook_path)
    again = await site.client.get(path)
    assert "Fresh from the instructor" in again.text and site.ctx.previews.renders == 2

    zh = await site.client.get(path, headers={"Accept-Language": "zh-CN"})
    assert "免费试读" in zh.text and site.ctx.previews.renders == 2
    assert (await site.client.get("/services/learnhub/courses/nope/preview")).status_code == 404


HOSTILE = [
    nbformat.v4.new_markdown_cell(
        "# Lesson\n\n[click](javascript:alert(1))\n\n<script>document.title='owned'</script>"
        "<img src=x onerror=alert(2)>"
        "<a href='data:text/html,<script>alert(3)</script>'>d</a>"
        "<iframe src='https://evil.example/'></iframe><style>body{display:none}</style>"
        "<form action='https://evil.example/'><input name=p></form>"
        "<p onclick='alert(4)' style='position:fixed'>text</p>"
    ),
    nbformat.v4.new_code_cell(
        "x = 1",
        outputs=[
            nbformat.v4.new_output(
                "display_data",
                data={
                    "text/html": "<b>bold</b><script>alert(5)</script>"
                    "<img src='https://tracker.example/p.png'>"
                    "<svg onload='alert(6)'><script>alert(7)</script></svg>",
                    "text/plain": "bold",
                },
            ),
            nbformat.v4.new_output(
                "display_data", data={"application/javascript": "alert(8)", "text/plain": "js"}
            ),
            nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="}),
        ],
    ),
]


async def test_preview_runs_nothing_from_the_notebook(tmp_path: Path) -> None:
    course = tmp_path / "hostile"
    shutil.copytree(ROOT / "courses" / COURSE, course)
    yaml_path = course / "course.yaml"
    yaml_path.write_text(
        yaml_path.read_text()
        .replace(f"id: {COURSE}", "id: hostile")
        .replace("preview: 01-data-model.ipynb", "preview: lesson.ipynb")
    )
    notebook = nbformat.v4.new_notebook(cells=HOSTILE)
    nbformat.write(notebook, course / "materials" / "lesson.ipynb")
    lesson = await PreviewLessons().lesson(load_course(course))
    assert lesson is not None and lesson.title == "Lesson"
    html = lesson.html.lower()
    for marker in (
        "<script",
        "javascript:",
        "onerror",
        "onload",
        "onclick",
        "<iframe",
        "<form",
        "<input",
        "<style",
        "style=",
        "data:text",
        "tracker.example",
        "<svg",
        "owned",
        "alert(5)",
        "alert(7)",
        "alert(8)",
    ):
        assert marker not in html, marker
    assert "<b>bold</b>" in lesson.html and "<h1>lesson</h1>" in html
    assert "<a>click</a>" in lesson.html
    assert 'src="data:image/png;base64,' in lesson.html


def test_clean_lesson_html_keeps_a_lessons_own_markup() -> None:
    kept = '<h2 id="Intro">Intro</h2><p><a href="https://docs.python.org/3/">docs</a></p>'
    assert clean_lesson_html(kept) == kept
    assert clean_lesson_html('<a href="#Intro">up</a>') == '<a href="#Intro">up</a>'
    assert clean_lesson_html('<a href="java\tscript:alert(1)">x</a>') == "<a>x</a>"


@pytest.mark.parametrize(
    ("html", "cleaned"),
    [
        # data: is an image's only source (no tracker, no relative fetch) ...
        (
            '<img src="data:image/png;base64,AA" alt="plot">',
            '<img src="data:image/png;base64,AA" alt="plot">',
        ),
        ('<img src="https://tracker.example/p.png" alt="p">', '<img alt="p">'),
        ('<img src="pixel.png">', "<img>"),
        ('<img src="data:text/html,hi">', "<img>"),
        ('<img src="DATA:\timage/svg+xml,x">', '<img src="DATA:\timage/svg+xml,x">'),
        # ... and never a link's target; relative and in-page links stay.
        ('<a href="data:image/png;base64,AA">d</a>', "<a>d</a>"),
        ('<a href=" data:text/html,x">d</a>', "<a>d</a>"),
        ('<a href="02-next.html">next</a>', '<a href="02-next.html">next</a>'),
        # Script-like content goes with its element, even inside foreign content.
        ("<p>a</p><script>owned()</script><svg><style>p{}</style></svg>", "<p>a</p>"),
    ],
)
def test_clean_lesson_html_allows_data_only_as_an_image(html: str, cleaned: str) -> None:
    assert clean_lesson_html(html) == cleaned


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("../source/ps1-data-model/problem.ipynb", "must be a notebook path inside materials/"),
        ("/etc/passwd.ipynb", "must be a notebook path inside materials/"),
        ("README.md", "must be a notebook path inside materials/"),
        ("no-such-lesson.ipynb", "preview: no notebook materials/no-such-lesson.ipynb"),
    ],
)
def test_course_yaml_preview_must_name_a_materials_notebook(
    tmp_path: Path, value: str, problem: str
) -> None:
    course = tmp_path / COURSE
    shutil.copytree(ROOT / "courses" / COURSE, course)
    yaml_path = course / "course.yaml"
    yaml_path.write_text(
        re.sub(r"^preview: .*$", f"preview: {value!r}", yaml_path.read_text(), flags=re.M)
    )
    with pytest.raises(CourseError, match=re.escape(problem)):
        load_course(course)


def test_site_root_routes_go_to_the_service_on_the_hubs_host() -> None:
    demo = Settings.model_validate({"hub": {"bind_url": "http://127.0.0.1:8000/"}})
    assert site_root_routes(demo, "http://127.0.0.1:10101") == {
        "localhost/robots.txt/": "http://127.0.0.1:10101",
        "localhost/sitemap.xml/": "http://127.0.0.1:10101",
    }
    flat = Settings.model_validate(
        {"hub": {"bind_url": "http://127.0.0.1:8000/base/", "subdomain_host": ""}}
    )
    assert site_root_routes(flat, "http://127.0.0.1:10101") == {
        "/base/robots.txt/": "http://127.0.0.1:10101",
        "/base/sitemap.xml/": "http://127.0.0.1:10101",
    }
