"""Course Q&A: members ask, answer and upvote; the asker or an instructor accepts an answer.

Who may do what is decided by the caller (the service checks course access first); this module
keeps the rules about the data: an answer belongs to its question, a member votes at most once
per answer, and only the asker or an instructor accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hub.errors import LearnHubError
from hub.mail import notices
from hub.store import Database
from hub.store.usage_models import Answer, AnswerVote, Question

MAX_TITLE = 200
MAX_BODY = 10_000


class QARejected(LearnHubError):
    """The request is not acceptable; the message says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AnswerView:
    """An answer as the question page shows it."""

    id: int
    author: str
    body: str
    created_at: datetime
    votes: int
    accepted: bool


@dataclass(frozen=True)
class QuestionView:
    """A question with its answers (accepted first, then by votes)."""

    id: int
    course_id: str
    author: str
    title: str
    body: str
    created_at: datetime
    answers: list[AnswerView]
    accepted: bool


def _text(value: str, limit: int, what: str) -> str:
    value = value.strip()
    if not value:
        raise QARejected(f"The {what} is empty.")
    if len(value) > limit:
        raise QARejected(f"Please keep the {what} under {limit} characters.")
    return value


def ask(db: Database, course_id: str, author: str, title: str, body: str) -> int:
    """Post a question; returns its id (blocking)."""
    title = _text(title, MAX_TITLE, "title")
    body = _text(body, MAX_BODY, "question")
    with db.transaction() as session:
        question = Question(
            course_id=course_id,
            author=author,
            title=title,
            body=body,
            created_at=datetime.now(UTC),
        )
        session.add(question)
        session.flush()
        return int(question.id)


def _question(session: sa.orm.Session, course_id: str, question_id: int) -> Question:
    question = session.get(Question, question_id)
    if question is None or question.course_id != course_id:
        raise QARejected("There is no such question in this course.", status=404)
    return question


def answer(db: Database, course_id: str, question_id: int, author: str, body: str) -> None:
    """Answer a question of the course (blocking)."""
    body = _text(body, MAX_BODY, "answer")
    with db.transaction() as session:
        _question(session, course_id, question_id)
        session.add(
            Answer(question_id=question_id, author=author, body=body, created_at=datetime.now(UTC))
        )
        notices.on_answer(session, question_id, author)  # mail the asker (hub/mail)


def _answer(session: sa.orm.Session, course_id: str, answer_id: int) -> Answer:
    row = session.get(Answer, answer_id)
    if row is None:
        raise QARejected("There is no such answer.", status=404)
    _question(session, course_id, row.question_id)
    return row


def vote(db: Database, course_id: str, answer_id: int, username: str) -> bool:
    """Upvote an answer; False when this member had already voted for it (blocking)."""
    try:
        with db.transaction() as session:
            row = _answer(session, course_id, answer_id)
            if row.author == username:
                raise QARejected("You cannot vote for your own answer.")
            session.add(AnswerVote(answer_id=answer_id, username=username))
    except IntegrityError:
        return False
    return True


def accept(db: Database, course_id: str, answer_id: int, username: str, *, instructor: bool) -> int:
    """Mark the answer accepted; only the asker or an instructor may. Returns the question id."""
    with db.transaction() as session:
        row = _answer(session, course_id, answer_id)
        question = _question(session, course_id, row.question_id)
        if not instructor and question.author != username:
            raise QARejected("Only the person who asked, or an instructor, can accept.", 403)
        question.accepted_answer_id = answer_id
        notices.on_accept(session, question.id, answer_id, username)  # mail (hub/mail)
        return int(question.id)


def questions(db: Database, course_id: str) -> list[QuestionView]:
    """The course's questions, newest first, with their answers (blocking)."""
    with db.transaction() as session:
        rows = session.scalars(
            sa.select(Question)
            .where(Question.course_id == course_id)
            .order_by(Question.created_at.desc(), Question.id.desc())
        ).all()
        return [_view(session, q) for q in rows]


def question(db: Database, course_id: str, question_id: int) -> QuestionView:
    """One question with its answers (blocking); :class:`QARejected` (404) when missing."""
    with db.transaction() as session:
        return _view(session, _question(session, course_id, question_id))


def _view(session: sa.orm.Session, q: Question) -> QuestionView:
    votes = dict(
        session.execute(
            sa.select(AnswerVote.answer_id, sa.func.count())
            .join(Answer, Answer.id == AnswerVote.answer_id)
            .where(Answer.question_id == q.id)
            .group_by(AnswerVote.answer_id)
        ).all()
    )
    answers = [
        AnswerView(
            id=a.id,
            author=a.author,
            body=a.body,
            created_at=a.created_at,
            votes=int(votes.get(a.id, 0)),
            accepted=a.id == q.accepted_answer_id,
        )
        for a in session.scalars(sa.select(Answer).where(Answer.question_id == q.id))
    ]
    answers.sort(key=lambda a: (not a.accepted, -a.votes, a.created_at))
    return QuestionView(
        id=q.id,
        course_id=q.course_id,
        author=q.author,
        title=q.title,
        body=q.body,
        created_at=q.created_at,
        answers=answers,
        accepted=q.accepted_answer_id is not None,
    )
