"""Course Q&A pages: ask, answer, upvote, accept, search, report, edit one's own post;
moderators hide, delete, lock.

Members of the course only, except the community rules page, which is public. Moderating
a course (its instructors and hub admins: :meth:`Member.administers`) is decided here, once,
by :meth:`QAPage.moderator`; the data rules live in :mod:`hub.qa`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hub import qa
from hub.access.policy import Member
from hub.courses import CourseEntry
from hub.markdown import render
from hub.service.base import route
from hub.service.pages import CoursePages

log = logging.getLogger("learnhub.service")

#: URL segment -> post kind.
KINDS = {"questions": "question", "answers": "answer"}


class QAPage(CoursePages):
    """Shared checks: the course exists and the viewer may open it."""

    async def course_member(
        self, course_id: str, *, write: bool = False
    ) -> tuple[Member, CourseEntry] | None:
        """The signed-in member and the course, or None after answering 404 / 403 / 429.

        A ``write`` (ask, answer, vote, accept, report, moderate) is decided from our
        database's entitlements (:meth:`writer`) and counts toward the ``limits.qa`` rate limit.
        """
        if self.require_learner() is None:
            return None
        entry = self.course_or_404(course_id)
        if entry is None:
            return None
        member = await (self.writer() if write else self.member())
        if member is None or not member.may_open(course_id):
            self.show_message(403, "forbidden", "forbidden_title", "qa_needs_access")
            return None
        if write and self.over_limit("qa"):
            return None
        return member, entry

    def reader(self, member: Member, course_id: str) -> qa.Reader:
        """``member`` as a reader of the course's Q&A (moderators see hidden posts)."""
        return qa.Reader(member.name, moderator=member.administers(course_id))

    def refuse(self, exc: qa.QARejected) -> None:
        """Show why a Q&A request was refused, in the page language."""
        reason = self.translate(exc.key, **exc.params) if exc.key else str(exc)
        self.show_message(exc.status, "invalid", "qa_refused_title", "qa_invalid", reason=reason)

    def log_post(
        self, message: str, user: str, course_id: str, kind: str, post_id: str, outcome: str
    ) -> None:
        """One structured log line about a member's action on a post."""
        extra = {"user": user, "course": course_id, "post": f"{kind}/{post_id}", "outcome": outcome}
        log.info(message, extra=extra)

    def questions_url(self, course_id: str) -> str:
        """The course's Q&A page."""
        return f"{self.ctx.prefix}courses/{course_id}/questions"

    def rules_url(self, course_id: str) -> str:
        """The course's community rules page."""
        return f"{self.ctx.prefix}courses/{course_id}/rules"


class QuestionsHandler(QAPage):
    """``GET|POST {prefix}courses/<id>/questions``: the list (``?q=`` searches), and asking."""

    async def get(self, course_id: str) -> None:
        """The course's questions the viewer may see, newest first; ``q`` filters them."""
        found = await self.course_member(course_id)
        if found is None:
            return
        viewer, entry = found
        search = self.get_query_argument("q", "").strip()[: qa.MAX_SEARCH]
        items = await asyncio.to_thread(
            qa.questions,
            self.ctx.db,
            course_id,
            reader=self.reader(viewer, course_id),
            search=search,
        )
        self.render_page(
            200,
            "questions.html",
            title=entry.course.title,
            course=entry.course,
            questions=items,
            base=self.questions_url(course_id),
            rules_url=self.rules_url(course_id),
            search=search,
        )

    async def post(self, course_id: str) -> None:
        """Ask a question."""
        found = await self.course_member(course_id, write=True)
        if found is None:
            return
        viewer, _entry = found
        try:
            question_id = await asyncio.to_thread(
                qa.ask,
                self.ctx.db,
                course_id,
                viewer.name,
                self.get_body_argument("title", ""),
                self.get_body_argument("body", ""),
            )
        except qa.QARejected as exc:
            self.refuse(exc)
            return
        log.info("question asked", extra={"user": viewer.name, "course": course_id})
        self.redirect(f"{self.questions_url(course_id)}/{question_id}", status=303)


class QuestionHandler(QAPage):
    """``GET|POST {prefix}courses/<id>/questions/<q>``: one question, and answering it."""

    async def get(self, course_id: str, question_id: str) -> None:
        """The question and its answers."""
        found = await self.course_member(course_id)
        if found is None:
            return
        viewer, entry = found
        reader = self.reader(viewer, course_id)
        try:
            item = await asyncio.to_thread(
                qa.question, self.ctx.db, course_id, int(question_id), reader=reader
            )
        except qa.QARejected as exc:
            self.refuse(exc)
            return
        self.render_page(
            200,
            "question.html",
            title=item.title,
            course=entry.course,
            q=item,
            base=self.questions_url(course_id),
            rules_url=self.rules_url(course_id),
            post_url=f"{self.ctx.prefix}courses/{course_id}",
            may_accept=viewer.name == item.author or viewer.administers(course_id),
            moderator=reader.moderator,
            me=viewer.name,
        )

    async def post(self, course_id: str, question_id: str) -> None:
        """Answer the question."""
        found = await self.course_member(course_id, write=True)
        if found is None:
            return
        viewer, _entry = found
        try:
            await asyncio.to_thread(
                qa.answer,
                self.ctx.db,
                course_id,
                int(question_id),
                viewer.name,
                self.get_body_argument("body", ""),
            )
        except qa.QARejected as exc:
            self.refuse(exc)
            return
        self.redirect(f"{self.questions_url(course_id)}/{question_id}", status=303)


class AnswerActionHandler(QAPage):
    """``POST {prefix}courses/<id>/answers/<a>/(vote|accept)``."""

    async def post(self, course_id: str, answer_id: str, action: str) -> None:
        """Upvote, or accept (asker or instructor only)."""
        found = await self.course_member(course_id, write=True)
        if found is None:
            return
        viewer, _entry = found
        db: Any = self.ctx.db
        try:
            if action == "vote":
                await asyncio.to_thread(qa.vote, db, course_id, int(answer_id), viewer.name)
            else:
                await asyncio.to_thread(
                    qa.accept,
                    db,
                    course_id,
                    int(answer_id),
                    viewer.name,
                    instructor=viewer.administers(course_id),
                )
            question_id = await asyncio.to_thread(
                qa.question_of, db, course_id, "answer", int(answer_id)
            )
        except qa.QARejected as exc:
            self.refuse(exc)
            return
        self.redirect(f"{self.questions_url(course_id)}/{question_id}", status=303)


class ReportHandler(QAPage):
    """``POST {prefix}courses/<id>/(questions|answers)/<n>/report``: a member reports a post."""

    async def post(self, course_id: str, kinds: str, post_id: str) -> None:
        """Record the report (once per member and post), then show the question again."""
        found = await self.course_member(course_id, write=True)
        if found is None:
            return
        viewer, _entry = found
        kind = KINDS[kinds]
        db = self.ctx.db
        try:
            new = await asyncio.to_thread(
                qa.report,
                db,
                course_id,
                kind,
                int(post_id),
                viewer.name,
                self.get_body_argument("reason", ""),
            )
            question_id = await asyncio.to_thread(qa.question_of, db, course_id, kind, int(post_id))
        except qa.QARejected as exc:
            self.refuse(exc)
            return
        outcome = "reported" if new else "already-reported"
        self.log_post("post reported", viewer.name, course_id, kind, post_id, outcome)
        self.show_message(
            200,
            "reported",
            "qa_reported_title",
            "qa_reported_body" if new else "qa_already_reported",
            alert="success",
            open_url=f"{self.questions_url(course_id)}/{question_id}",
        )


class EditHandler(QAPage):
    """``GET|POST {prefix}courses/<id>/(questions|answers)/<n>/edit``: the author changes their
    own post (the rule, in :func:`hub.qa.edit`: not once a moderator hid it or locked its
    question)."""

    async def get(self, course_id: str, kinds: str, post_id: str) -> None:
        """The edit form, filled with the post's Markdown source."""
        found = await self.course_member(course_id)
        if found is None:
            return
        viewer, entry = found
        try:
            post = await asyncio.to_thread(
                qa.editable, self.ctx.db, course_id, KINDS[kinds], int(post_id), viewer.name
            )
        except qa.QARejected as exc:
            self.refuse(exc)
            return
        self.render_page(
            200,
            "edit_post.html",
            title=self.translate("qa_edit_title"),
            course=entry.course,
            post=post,
            base=self.questions_url(course_id),
            action=f"{self.ctx.prefix}courses/{course_id}/{kinds}/{post_id}/edit",
        )

    async def post(self, course_id: str, kinds: str, post_id: str) -> None:
        """Save the edit, then show the question again."""
        found = await self.course_member(course_id, write=True)
        if found is None:
            return
        viewer, _entry = found
        kind = KINDS[kinds]
        try:
            question_id = await asyncio.to_thread(
                qa.edit,
                self.ctx.db,
                course_id,
                kind,
                int(post_id),
                viewer.name,
                self.get_body_argument("body", ""),
                self.get_body_argument("title", "") if kind == "question" else None,
            )
        except qa.QARejected as exc:
            refused = exc.key or str(exc.status)
            self.log_post("post edit refused", viewer.name, course_id, kind, post_id, refused)
            self.refuse(exc)
            return
        self.log_post("post edited", viewer.name, course_id, kind, post_id, "edited")
        self.redirect(f"{self.questions_url(course_id)}/{question_id}", status=303)


class ModerateHandler(QAPage):
    """``POST {prefix}courses/<id>/(questions|answers)/<n>/<action>``: hide, show, delete,
    dismiss (the reports), lock or unlock. The course's instructors and hub admins only."""

    async def post(self, course_id: str, kinds: str, post_id: str, action: str) -> None:
        """Apply the action, log it, then go back to where the moderator came from."""
        # Not a write in the rate limit's sense: a moderator clearing a queue is not spamming.
        found = await self.course_member(course_id)
        if found is None:
            return
        viewer, _entry = found
        if not viewer.administers(course_id):
            log.warning(
                "moderation refused",
                extra={
                    "user": viewer.name,
                    "course": course_id,
                    "action": action,
                    "outcome": "403",
                },
            )
            self.show_message(
                403, "forbidden", "forbidden_title", "qa_moderators_only", alert="warning"
            )
            return
        kind = KINDS[kinds]
        try:
            question_id = await asyncio.to_thread(
                qa.moderate, self.ctx.db, course_id, kind, int(post_id), viewer.name, action
            )
        except qa.QARejected as exc:
            self.refuse(exc)
            return
        log.info(
            "post moderated",
            extra={
                "user": viewer.name,
                "course": course_id,
                "action": action,
                "post": f"{kind}/{post_id}",
                "outcome": "done",
            },
        )
        # Back to the queue when acting from it; to the question otherwise (a deleted
        # question has no page any more: its course's Q&A then).
        back = self.get_body_argument("next", "")
        if back not in ("instructor", "admin"):
            target = (
                self.questions_url(course_id)
                if kind == "question" and action == "delete"
                else f"{self.questions_url(course_id)}/{question_id}"
            )
        elif back == "admin" and viewer.admin:
            target = f"{self.ctx.prefix}admin#moderation"
        else:
            target = f"{self.ctx.prefix}instructor/{course_id}#moderation"
        self.redirect(target, status=303)


class RulesHandler(QAPage):
    """``GET {prefix}courses/<id>/rules``: the community's rules, for anyone (no sign-in)."""

    async def get(self, course_id: str) -> None:
        """The rules from ``course.yaml`` (``community_rules``), else LearnHub's default."""
        entry = self.course_or_404(course_id)
        if entry is None:
            return
        # course.yaml's own rules, else the default in the reader's language; both rendered
        # as any post is (the template shows post HTML one way only).
        source = entry.course.community_rules.strip() or self.translate("qa_default_rules")
        rules_html = await asyncio.to_thread(render, source)
        self.render_page(
            200,
            "rules.html",
            title=f"{self.translate('qa_rules')}: {entry.course.title}",
            course=entry.course,
            rules_html=rules_html,
            base=self.questions_url(course_id),
        )


def community_routes(prefix: str) -> list[Any]:
    """Routes of the course Q&A, its moderation and its rules page."""
    kinds = "(questions|answers)"
    return [
        (route(prefix, "courses/([a-z0-9-]+)/questions"), QuestionsHandler),
        (route(prefix, "courses/([a-z0-9-]+)/questions/([0-9]+)"), QuestionHandler),
        (
            route(prefix, "courses/([a-z0-9-]+)/answers/([0-9]+)/(vote|accept)"),
            AnswerActionHandler,
        ),
        (route(prefix, f"courses/([a-z0-9-]+)/{kinds}/([0-9]+)/report"), ReportHandler),
        (route(prefix, f"courses/([a-z0-9-]+)/{kinds}/([0-9]+)/edit"), EditHandler),
        (
            route(
                prefix,
                f"courses/([a-z0-9-]+)/{kinds}/([0-9]+)/(hide|show|delete|dismiss|lock|unlock)",
            ),
            ModerateHandler,
        ),
        (route(prefix, "courses/([a-z0-9-]+)/rules"), RulesHandler),
    ]
