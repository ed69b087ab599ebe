"""Pages for visitors and crawlers: the free preview lesson, `robots.txt`, `sitemap.xml`.

The sharing tags and schema.org data of the catalog and course pages are made by
:mod:`hub.seo` and put in by :mod:`hub.service.pages`; this module serves what exists only for
visitors and search engines.
"""

from __future__ import annotations

import logging
from typing import Any

from markupsafe import Markup

from hub.courses import CourseEntry
from hub.i18n import translator
from hub.seo import PageMeta, robots_txt, short_description, sitemap_xml
from hub.service.base import BaseHandler, LearnerPage, route
from hub.service.context import ServiceContext

log = logging.getLogger("learnhub.service")


def preview_path(prefix: str, course_id: str) -> str:
    """URL path of a course's preview lesson."""
    return f"{prefix}courses/{course_id}/preview"


class PreviewHandler(LearnerPage):
    """``GET {prefix}courses/<id>/preview``: the course's free lesson, for anyone."""

    async def get(self, course_id: str) -> None:
        """The lesson's cells as HTML, with the way to buy or open the course."""
        entry = self.course_or_404(course_id)
        if entry is None:
            return
        lesson = await self.ctx.previews.lesson(entry)
        if lesson is None:
            self.show_message(
                404, "not-found", "not_found_title", "no_preview", course=entry.course.title
            )
            return
        _ = translator(self.lang)
        course = entry.course
        path = preview_path(self.ctx.prefix, course.id)
        viewer = self.viewer()
        self.render_page(
            200,
            "preview.html",
            viewer=viewer,
            title=_("preview_title", lesson=lesson.title, course=course.title),
            course=course,
            course_url=f"{self.ctx.prefix}courses/{course.id}",
            lesson=lesson,
            # Cleaned to an allow-list when it was rendered (hub.preview.clean_lesson_html).
            lesson_html=Markup(lesson.html),  # noqa: S704
            lesson_css=f"{self.ctx.prefix}lesson.css",
            meta=PageMeta(
                title=_("preview_title", lesson=lesson.title, course=course.title),
                description=short_description(
                    _("preview_description", lesson=lesson.title, course=course.title)
                    + " "
                    + course.summary
                ),
                url=self.ctx.settings.absolute_url(path),
                lang=self.lang,
                og_type="article",
            ),
        )


class LessonStylesheet(BaseHandler):
    """``GET {prefix}lesson.css``: code colours and layout of the preview lesson (a file, as
    the pages' Content-Security-Policy allows styles from this origin, not inline)."""

    def get(self) -> None:
        """The stylesheet; it changes only with a new version of LearnHub."""
        from hub.preview import lesson_stylesheet

        self.set_header("Content-Type", "text/css; charset=utf-8")
        self.set_header("Cache-Control", "public, max-age=3600")
        self.finish(lesson_stylesheet())


def public_urls(ctx: ServiceContext, entries: list[CourseEntry]) -> list[str]:
    """Absolute addresses of every public page: the catalog, each course, each preview."""
    absolute = ctx.settings.absolute_url
    urls = [absolute(ctx.prefix)]
    for entry in entries:
        urls.append(absolute(f"{ctx.prefix}courses/{entry.course.id}"))
        if entry.course.preview is not None:
            urls.append(absolute(preview_path(ctx.prefix, entry.course.id)))
    return urls


class SitemapHandler(BaseHandler):
    """``GET {base}sitemap.xml`` (and under the prefix): every public page, in each language."""

    def get(self) -> None:
        """The sitemap, from the catalog (fixed for the life of the service)."""
        self.set_header("Content-Type", "application/xml; charset=utf-8")
        self.set_header("Cache-Control", "public, max-age=3600")
        self.finish(sitemap_xml(public_urls(self.ctx, list(self.ctx.catalog))))


class RobotsHandler(BaseHandler):
    """``GET {base}robots.txt`` (and under the prefix): what crawlers may read."""

    def get(self) -> None:
        """The rules and where the sitemap is."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "public, max-age=3600")
        self.finish(robots_txt(self.ctx.settings, self.ctx.hub_base, self.ctx.prefix))


def storefront_routes(prefix: str, hub_base: str) -> list[Any]:
    """Routes of the preview lesson, its stylesheet, and of `robots.txt` and `sitemap.xml`
    both at the Hub's base URL (where the proxy's site-root routes bring them,
    :func:`hub.seo.site_root_routes`) and under the service's prefix."""
    return [
        (route(prefix, "courses/([a-z0-9-]+)/preview"), PreviewHandler),
        (route(prefix, r"lesson\.css"), LessonStylesheet),
        (route(hub_base, r"robots\.txt"), RobotsHandler),
        (route(prefix, r"robots\.txt"), RobotsHandler),
        (route(hub_base, r"sitemap\.xml"), SitemapHandler),
        (route(prefix, r"sitemap\.xml"), SitemapHandler),
    ]
