"""The free preview lesson of a course: one notebook of `materials/`, rendered to safe HTML.

A course marks the lesson in its `course.yaml` (``preview: 01-intro.ipynb``); anyone, signed
in or not, may read it on ``{prefix}courses/<id>/preview``. The notebook is converted with
nbconvert's HTML exporter (its ``basic`` template: the cells without a page around them), never
executed: what shows is what the instructor saved, outputs included.

Course materials are written by instructors, but the page is public and on the site's own
origin, so the HTML is cleaned as if a stranger wrote it (:func:`clean_lesson_html`): the
site's one sanitizer (:mod:`hub.sanitize`, nh3, the same as members' posts) with this module's
allow-list (:data:`LESSON_HTML`): links only to ``http(s):``, ``mailto:`` and relative or
in-page addresses, images only as ``data:image/...`` (what nbconvert embeds), no scripts,
styles, frames, forms or event handlers. nbconvert's own ``sanitize_html`` is not used: its
allow-list has no headings, paragraphs or images, so it shows a lesson's Markdown as escaped
tags. The service's Content-Security-Policy (``script-src 'none'``) stays the second line.

Rendering takes about two seconds (nbconvert's templates and Markdown), so each lesson is
rendered once and kept; a request first compares the notebook's bytes with those it was
rendered from (a hash of a small file) and renders again only when the notebook changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hub.courses import CourseEntry
from hub.sanitize import Allowlist, clean

#: Tags a lesson may use: text, code, lists, tables, images, details. Everything else is
#: removed (its text kept), script and style elements with their content.
ALLOWED_TAGS = frozenset(
    {
        *(f"h{level}" for level in range(1, 7)),
        *("p", "div", "span", "pre", "code", "kbd", "samp", "var", "br", "hr", "blockquote"),
        *("em", "strong", "b", "i", "u", "s", "del", "ins", "sub", "sup", "abbr", "small"),
        *("ul", "ol", "li", "dl", "dt", "dd", "a", "img", "figure", "figcaption"),
        *("table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "details", "summary"),
    }
)
#: Schemes any URL attribute may use (the sanitizer checks them); ``data`` is only for
#: images, which :func:`_data_only_for_images` enforces.
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
#: Control characters and spaces a browser ignores inside a URL scheme (``java\tscript:``).
_URL_NOISE = re.compile(r"[\x00-\x20]+")


def _lesson_attributes() -> dict[str, frozenset[str]]:
    # Every tag keeps its classes (nbconvert's layout and Pygments' colours) and, but for links
    # and images, its id (headings' anchors); links, images and table cells keep what they need.
    attributes = {tag: frozenset({"class", "id"}) for tag in ALLOWED_TAGS - {"a", "img"}}
    attributes["a"] = frozenset({"class", "href", "title"})
    attributes["img"] = frozenset({"class", "src", "alt", "width", "height"})
    for cell in ("td", "th"):
        attributes[cell] = attributes[cell] | {"colspan", "rowspan", "scope"}
    return attributes


def _data_only_for_images(tag: str, name: str, value: str) -> str | None:
    """``value`` if ``tag`` may keep ``name="value"``, else None: ``data:`` is an image's only
    source (no tracker can be called) and never a link's target (a ``data:text/html`` page)."""
    is_data = _URL_NOISE.sub("", value).lower().startswith
    if tag == "img" and name == "src":
        return value if is_data("data:image/") else None
    if tag == "a" and name == "href":
        return None if is_data("data:") else value
    return value


#: What a lesson's HTML may keep. No ``rel`` is added to links: no ``target`` is allowed, so a
#: link cannot open a window that could reach back to this page.
LESSON_HTML = Allowlist(
    tags=ALLOWED_TAGS,
    attributes=_lesson_attributes(),
    url_schemes=ALLOWED_PROTOCOLS,
    attribute_filter=_data_only_for_images,
)


def clean_lesson_html(html: str) -> str:
    """``html`` with only what a lesson needs and nothing that runs (see the module doc)."""
    return clean(html, LESSON_HTML)


def lesson_title(notebook_json: str, fallback: str) -> str:
    """The lesson's first Markdown heading (``# Title``), else ``fallback``."""
    import nbformat

    notebook = nbformat.reads(notebook_json, as_version=4)  # type: ignore[no-untyped-call]
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for line in str(cell.source).splitlines():
            match = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
            if match:
                return match.group(1).strip()
    return fallback


#: nbconvert's exporter is made once (loading its templates is most of a render's time) and
#: used by one render at a time (it keeps per-conversion state).
_exporter_lock = threading.Lock()


@cache
def _exporter() -> Any:
    from nbconvert import HTMLExporter

    return HTMLExporter(  # type: ignore[no-untyped-call]
        template_name="basic",
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        # Anchor links are "¶" glyphs with no text alternative; headings keep their ids.
        exclude_anchor_links=True,
    )


def render_notebook(notebook_json: str) -> str:
    """A notebook (its JSON text) as the cleaned HTML of its cells, not executed."""
    import nbformat

    notebook = nbformat.reads(notebook_json, as_version=4)  # type: ignore[no-untyped-call]
    with _exporter_lock:
        body, _resources = _exporter().from_notebook_node(notebook)
    return clean_lesson_html(str(body))


@cache
def lesson_stylesheet() -> str:
    """The preview page's stylesheet: Pygments' colours for nbconvert's highlighted code, and
    a layout that keeps wide code and tables inside a phone's width."""
    from pygments.formatters import HtmlFormatter

    layout = """
.learnhub-lesson { overflow-wrap: anywhere; }
.learnhub-lesson .input_area, .learnhub-lesson .output_area pre {
  background: var(--bs-tertiary-bg, #f7f7f7); border: 1px solid var(--bs-border-color, #ddd);
  border-radius: .25rem; padding: .5rem; margin-bottom: 1rem; }
/* Long lines wrap rather than scroll: a scrolling box of code is one more stop a keyboard
   user must reach (axe: scrollable-region-focusable), and on a phone most lines are long. */
.learnhub-lesson pre { margin: 0; white-space: pre-wrap; overflow: visible; }
.learnhub-lesson table { display: block; max-width: 100%; overflow-x: auto;
  border-collapse: collapse; margin-bottom: 1rem; }
.learnhub-lesson th, .learnhub-lesson td { border: 1px solid var(--bs-border-color, #ddd);
  padding: .25rem .5rem; }
.learnhub-lesson img { max-width: 100%; height: auto; }
"""
    # Pygments' default style, whose colours keep 4.5:1 contrast on the light code background.
    return str(HtmlFormatter(style="default").get_style_defs(".highlight")) + layout


@dataclass(frozen=True)
class Lesson:
    """One rendered preview lesson."""

    title: str
    #: Cleaned HTML of the notebook's cells.
    html: str
    #: SHA-256 of the notebook bytes it was rendered from.
    digest: str


class PreviewLessons:
    """The courses' preview lessons, each rendered once and again when its notebook changes."""

    def __init__(self) -> None:
        self._lessons: dict[str, Lesson] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: How many renders ran (the tests read it: a second view must not render again).
        self.renders = 0
        self._count_lock = threading.Lock()

    @staticmethod
    def path(entry: CourseEntry) -> Path | None:
        """The course's preview notebook, or None when it has none."""
        name = entry.course.preview
        return None if name is None else entry.materials_dir / name

    async def lesson(self, entry: CourseEntry) -> Lesson | None:
        """The course's preview lesson, rendered now if the notebook is new or changed; None
        when the course has no preview or its notebook is gone."""
        path = self.path(entry)
        if path is None:
            return None
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        digest = hashlib.sha256(data).hexdigest()
        course_id = entry.course.id
        kept = self._lessons.get(course_id)
        if kept is not None and kept.digest == digest:
            return kept
        # One render per course at a time; others wait for it rather than render it again.
        lock = self._locks.setdefault(course_id, asyncio.Lock())
        async with lock:
            kept = self._lessons.get(course_id)
            if kept is not None and kept.digest == digest:
                return kept
            lesson = await asyncio.to_thread(self._render, data, digest, path.stem)
            self._lessons[course_id] = lesson
            return lesson

    def _render(self, data: bytes, digest: str, fallback_title: str) -> Lesson:
        text = data.decode("utf-8")
        with self._count_lock:
            self.renders += 1
        return Lesson(
            title=lesson_title(text, fallback_title), html=render_notebook(text), digest=digest
        )
