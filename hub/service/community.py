"""Course Q&A pages: ask, answer, upvote, accept. Members of the course only."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hub import qa
from hub.access.policy import Member
from hub.courses import CourseEntry
from hub.service.base import route
from hub.service.pages import CoursePages

log = logging.getLogger("learnhub.service")


class QAPage(CoursePages):
    """Shared checks: the course exists and the viewer may open it."""

    async def course_member(
        self, course_id: str, *, write: bool = False
    ) -> tuple[Member, CourseEntry] | None:
        """The signed-in member and the course, or None after answering 404 / 403 / 429.

        A ``write`` (ask, answer, vote, accept) is decided from our database's entitlements
        (:meth:`writer`) and counts toward the ``limits.qa`` rate limit.
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

    def refuse(self, exc: qa.QARejected) -> None:
        """Show why a Q&A request was refused."""
        self.show_message(
            exc.status, "invalid", "qa_refused_title", "review_invalid", reason=str(exc)
        )

    def questions_url(self, course_id: str) -> str:
        """The course's Q&A page."""
        return f"{self.ctx.prefix}courses/{course_id}/questions"


class QuestionsHandler(QAPage):
    """``GET|POST {prefix}courses/<id>/questions``: the list, and asking."""

    async def get(self, course_id: str) -> None:
        """Every question of the course, newest first."""
        found = await self.course_member(course_id)
        if found is None:
            return
        _viewer, entry = found
        items = await asyncio.to_thread(qa.questions, self.ctx.db, course_id)
        self.render_page(
            200,
            "questions.html",
            title=entry.course.title,
            course=entry.course,
            questions=items,
            base=self.questions_url(course_id),
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
        try:
            item = await asyncio.to_thread(qa.question, self.ctx.db, course_id, int(question_id))
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
            may_accept=viewer.name == item.author or viewer.administers(course_id),
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
            question_id = await asyncio.to_thread(_question_of, db, int(answer_id))
        except qa.QARejected as exc:
            self.refuse(exc)
            return
        self.redirect(f"{self.questions_url(course_id)}/{question_id}", status=303)


def _question_of(db: Any, answer_id: int) -> int:
    from hub.store.usage_models import Answer

    with db.transaction() as session:
        row = session.get(Answer, answer_id)
        return int(row.question_id) if row else 0


def community_routes(prefix: str) -> list[Any]:
    """Routes of the course Q&A."""
    return [
        (route(prefix, "courses/([a-z0-9-]+)/questions"), QuestionsHandler),
        (route(prefix, "courses/([a-z0-9-]+)/questions/([0-9]+)"), QuestionHandler),
        (
            route(prefix, "courses/([a-z0-9-]+)/answers/([0-9]+)/(vote|accept)"),
            AnswerActionHandler,
        ),
    ]
