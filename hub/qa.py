"""Course Q&A: members ask, answer, upvote and report; the asker or an instructor accepts;
the course's moderators (its instructors and hub admins) hide, delete and lock.

Who may do what is decided by the caller (the service checks course access first, and whether
the viewer moderates the course); this module keeps the rules about the data: an answer belongs
to its question, a member votes at most once per answer and reports a post at most once, only
the asker or an instructor accepts, a locked question takes no answers, only its author edits
a post and only while a moderator has not hidden it or locked its question, and what a
moderator hid or deleted is shown to whom.

Posts are Markdown: the source is kept (for editing) and the HTML rendered by
:func:`hub.markdown.render` is stored beside it, so showing a page never parses Markdown. An
edit renders again, marks the post edited (``edited_at``) and keeps the previous source in
``post_edits``, which the moderation queue shows: what was reported stays readable.

Visibility: a visible post is for everyone who may read the course; a hidden one only for its
author (marked hidden) and the moderators; a deleted one for nobody (the row stays, for the
moderation log and the reports that name it).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hub.errors import LearnHubError
from hub.mail import notices
from hub.markdown import render
from hub.store import Database
from hub.store.usage_models import (
    DELETED,
    HIDDEN,
    VISIBLE,
    Answer,
    AnswerVote,
    ModerationAction,
    PostEdit,
    PostReport,
    Question,
)

MAX_TITLE = 200
MAX_BODY = 10_000
MAX_REASON = 500
MAX_SEARCH = 200

#: The kinds of post a member can report and a moderator act on.
POST_KINDS = ("question", "answer")
#: What a moderator can do, and to which kinds of post.
ACTIONS: dict[str, tuple[str, ...]] = {
    "hide": POST_KINDS,
    "show": POST_KINDS,
    "delete": POST_KINDS,
    "dismiss": POST_KINDS,
    "lock": ("question",),
    "unlock": ("question",),
}


class QARejected(LearnHubError):
    """The request is not acceptable; the message says why.

    ``key`` and ``params`` name the message in the catalogs (:mod:`hub.i18n`), so a page can
    say it in the reader's language; the English ``message`` is for logs and callers without one.
    """

    def __init__(self, message: str, status: int = 400, *, key: str = "", **params: object) -> None:
        super().__init__(message)
        self.status = status
        self.key = key
        self.params = params


@dataclass(frozen=True)
class AnswerView:
    """An answer as the question page shows it."""

    id: int
    author: str
    body: str
    created_at: datetime
    votes: int
    accepted: bool
    #: ``body`` rendered (safe HTML).
    body_html: str = ""
    #: ``visible`` or ``hidden`` (deleted answers are never shown).
    status: str = VISIBLE
    #: When its author last edited it (None: never).
    edited_at: datetime | None = None

    @property
    def hidden(self) -> bool:
        """Whether a moderator hid it (only its author and moderators see it)."""
        return self.status == HIDDEN


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
    #: ``body`` rendered (safe HTML).
    body_html: str = ""
    #: ``visible`` or ``hidden`` (deleted questions are never shown).
    status: str = VISIBLE
    #: No new answers.
    locked: bool = False
    #: When its author last edited it (None: never).
    edited_at: datetime | None = None

    @property
    def hidden(self) -> bool:
        """Whether a moderator hid it (only its author and moderators see it)."""
        return self.status == HIDDEN


@dataclass(frozen=True)
class Reader:
    """Who reads the Q&A: their name (None: nobody in particular) and whether they moderate
    the course. Decides which hidden posts they see."""

    name: str | None = None
    moderator: bool = False

    def sees(self, status: str, author: str) -> bool:
        """Whether a post with ``status`` by ``author`` is shown to this reader."""
        if status == VISIBLE:
            return True
        if status == HIDDEN:
            return self.moderator or (self.name is not None and self.name == author)
        return False


EVERYONE = Reader()


@dataclass(frozen=True)
class Report:
    """One member's report of a post."""

    reporter: str
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class Edit:
    """What a post said before one edit (the moderation queue shows them)."""

    editor: str
    edited_at: datetime
    #: The question's title before the edit (None for answers and announcements).
    previous_title: str | None
    previous_body: str


@dataclass(frozen=True)
class Editable:
    """A post as its edit form shows it: the Markdown source, not the HTML."""

    kind: str
    post_id: int
    question_id: int
    #: The question's title (for an answer: the title of its question, for context).
    title: str
    body: str


@dataclass(frozen=True)
class QueueItem:
    """A reported post waiting for a moderator, with its open reports (oldest first)."""

    course_id: str
    kind: str
    post_id: int
    #: The question the post is, or belongs to (for the link).
    question_id: int
    title: str
    author: str
    body_html: str
    status: str
    locked: bool
    reports: list[Report] = field(default_factory=list)
    #: The post's earlier versions, oldest first (empty: never edited).
    edits: list[Edit] = field(default_factory=list)


@dataclass(frozen=True)
class LoggedAction:
    """One entry of the moderation log."""

    course_id: str
    moderator: str
    action: str
    kind: str
    post_id: int
    author: str
    acted_at: datetime


def _text(value: str, limit: int, what: str) -> str:
    value = value.strip()
    if not value:
        raise QARejected(f"The {what} is empty.", key=f"qa_empty_{what}")
    if len(value) > limit:
        raise QARejected(
            f"Please keep the {what} under {limit} characters.",
            key=f"qa_too_long_{what}",
            limit=limit,
        )
    return value


def ask(db: Database, course_id: str, author: str, title: str, body: str) -> int:
    """Post a question (Markdown ``body``); returns its id (blocking)."""
    title = _text(title, MAX_TITLE, "title")
    body = _text(body, MAX_BODY, "question")
    html = render(body)
    with db.transaction() as session:
        question = Question(
            course_id=course_id,
            author=author,
            title=title,
            body=body,
            body_html=html,
            created_at=datetime.now(UTC),
            status=VISIBLE,
            locked=False,
        )
        session.add(question)
        session.flush()
        return int(question.id)


def _question(
    session: sa.orm.Session, course_id: str, question_id: int, reader: Reader | None = None
) -> Question:
    """The course's question ``question_id``; 404 when missing or not for ``reader``'s eyes
    (deleted questions are for nobody's)."""
    question = session.get(Question, question_id)
    if (
        question is None
        or question.course_id != course_id
        or question.status == DELETED
        or (reader is not None and not reader.sees(question.status, question.author))
    ):
        raise QARejected("There is no such question in this course.", 404, key="qa_no_question")
    return question


def answer(db: Database, course_id: str, question_id: int, author: str, body: str) -> None:
    """Answer a question of the course (Markdown ``body``; blocking).

    Only a visible, unlocked question takes answers.
    """
    body = _text(body, MAX_BODY, "answer")
    html = render(body)
    with db.transaction() as session:
        question = _question(session, course_id, question_id, EVERYONE)
        if question.locked:
            raise QARejected(
                "This question is locked: it takes no new answers.", 403, key="qa_locked"
            )
        session.add(
            Answer(
                question_id=question_id,
                author=author,
                body=body,
                body_html=html,
                created_at=datetime.now(UTC),
                status=VISIBLE,
            )
        )
        notices.on_answer(session, question_id, author)  # mail the asker (hub/mail)


def _answer(
    session: sa.orm.Session, course_id: str, answer_id: int, reader: Reader | None = None
) -> Answer:
    row = session.get(Answer, answer_id)
    if (
        row is None
        or row.status == DELETED
        or (reader is not None and not reader.sees(row.status, row.author))
    ):
        raise QARejected("There is no such answer.", 404, key="qa_no_answer")
    _question(session, course_id, row.question_id, reader)
    return row


def vote(db: Database, course_id: str, answer_id: int, username: str) -> bool:
    """Upvote an answer; False when this member had already voted for it (blocking)."""
    try:
        with db.transaction() as session:
            row = _answer(session, course_id, answer_id, EVERYONE)
            if row.author == username:
                raise QARejected("You cannot vote for your own answer.", key="qa_own_vote")
            session.add(AnswerVote(answer_id=answer_id, username=username))
    except IntegrityError:
        return False
    return True


def accept(db: Database, course_id: str, answer_id: int, username: str, *, instructor: bool) -> int:
    """Mark the answer accepted; only the asker or an instructor may. Returns the question id."""
    with db.transaction() as session:
        row = _answer(session, course_id, answer_id, EVERYONE)
        question = _question(session, course_id, row.question_id)
        if not instructor and question.author != username:
            raise QARejected(
                "Only the person who asked, or an instructor, can accept.", 403, key="qa_not_asker"
            )
        question.accepted_answer_id = answer_id
        notices.on_accept(session, question.id, answer_id, username)  # mail (hub/mail)
        return int(question.id)


def like_pattern(text: str) -> str:
    """A ``LIKE ... ESCAPE '\\'`` pattern that finds ``text`` literally (``%``, ``_`` too)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def questions(
    db: Database, course_id: str, *, reader: Reader = EVERYONE, search: str = ""
) -> list[QuestionView]:
    """The course's questions ``reader`` may see, newest first, with their answers (blocking).

    ``search`` keeps those whose title or text contains it (case-insensitive, taken
    literally: ``%`` and ``_`` are not wildcards).
    """
    query = sa.select(Question).where(Question.course_id == course_id, Question.status != DELETED)
    search = search.strip()[:MAX_SEARCH]
    if search:
        pattern = like_pattern(search)
        query = query.where(
            sa.or_(
                Question.title.ilike(pattern, escape="\\"),
                Question.body.ilike(pattern, escape="\\"),
            )
        )
    with db.transaction() as session:
        rows = session.scalars(query.order_by(Question.created_at.desc(), Question.id.desc())).all()
        return [_view(session, q, reader) for q in rows if reader.sees(q.status, q.author)]


def question(
    db: Database, course_id: str, question_id: int, *, reader: Reader = EVERYONE
) -> QuestionView:
    """One question with its answers (blocking); :class:`QARejected` (404) when missing or not
    for ``reader``."""
    with db.transaction() as session:
        return _view(session, _question(session, course_id, question_id, reader), reader)


def _view(session: sa.orm.Session, q: Question, reader: Reader) -> QuestionView:
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
            body_html=a.body_html,
            status=a.status,
            edited_at=a.edited_at,
        )
        for a in session.scalars(sa.select(Answer).where(Answer.question_id == q.id))
        if reader.sees(a.status, a.author)
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
        accepted=any(a.accepted for a in answers),
        body_html=q.body_html,
        status=q.status,
        locked=q.locked,
        edited_at=q.edited_at,
    )


def _post(
    session: sa.orm.Session, course_id: str, kind: str, post_id: int, reader: Reader | None = None
) -> tuple[Question | Answer, Question]:
    """The post and the question it is or belongs to."""
    if kind == "question":
        q = _question(session, course_id, post_id, reader)
        return q, q
    row = _answer(session, course_id, post_id, reader)
    return row, _question(session, course_id, row.question_id)


def question_of(db: Database, course_id: str, kind: str, post_id: int) -> int:
    """The id of the question a post is, or belongs to (blocking); 404 when gone."""
    with db.transaction() as session:
        return int(_post(session, course_id, kind, post_id)[1].id)


def _own_editable_post(
    session: sa.orm.Session, course_id: str, kind: str, post_id: int, editor: str
) -> tuple[Question | Answer, Question]:
    """The post ``editor`` may edit now, and its question; :class:`QARejected` otherwise.

    Only its author edits a post, and only while it and its question are visible and the
    question is not locked: a moderator's hide or lock wins over the author's wish to change it.
    """
    if kind not in POST_KINDS:
        raise QARejected("There is no such post.", 404, key="qa_no_post")
    post, q = _post(session, course_id, kind, post_id, Reader(editor))
    if post.author != editor:
        raise QARejected("Only its author can edit a post.", 403, key="qa_not_author")
    if post.status != VISIBLE or q.status != VISIBLE:
        raise QARejected(
            "A moderator hid this post: it cannot be edited.", 403, key="qa_edit_hidden"
        )
    if q.locked:
        raise QARejected(
            "This question is locked: its posts cannot be edited.", 403, key="qa_edit_locked"
        )
    return post, q


def editable(db: Database, course_id: str, kind: str, post_id: int, editor: str) -> Editable:
    """The source of a post ``editor`` may edit now (blocking); :class:`QARejected` when they
    may not (see :func:`edit`)."""
    with db.transaction() as session:
        post, q = _own_editable_post(session, course_id, kind, post_id, editor)
        return Editable(kind, post_id, int(q.id), q.title, post.body)


def edit(
    db: Database,
    course_id: str,
    kind: str,
    post_id: int,
    editor: str,
    body: str,
    title: str | None = None,
) -> int:
    """Replace the Markdown of the author's own post (and a question's ``title``; blocking).

    Only its author may, while neither a moderator's hide nor a lock stands in the way. The
    post is rendered again and marked edited; what it said before is kept in ``post_edits``.
    Saving an unchanged post changes nothing. Returns the id of the question concerned.
    """
    with db.transaction() as session:
        # Who may edit first: someone else's post is refused whatever they sent.
        post, q = _own_editable_post(session, course_id, kind, post_id, editor)
        body = _text(body, MAX_BODY, kind)
        new_title = _text(title or "", MAX_TITLE, "title") if isinstance(post, Question) else None
        if post.body == body and (new_title is None or new_title == q.title):
            return int(q.id)
        previous_title = q.title if new_title is not None else None
        now = keep_previous(session, course_id, kind, post_id, editor, post.body, previous_title)
        post.body, post.body_html, post.edited_at = body, render(body), now
        if isinstance(post, Question) and new_title is not None:
            post.title = new_title
        return int(q.id)


def keep_previous(
    session: sa.orm.Session,
    course_id: str,
    kind: str,
    post_id: int,
    editor: str,
    previous_body: str,
    previous_title: str | None = None,
) -> datetime:
    """Record what a post (``question``, ``answer`` or ``announcement``) said before the edit
    ``editor`` is making now (in the caller's transaction); returns the edit's time."""
    now = datetime.now(UTC)
    session.add(
        PostEdit(
            course_id=course_id,
            kind=kind,
            post_id=post_id,
            editor=editor,
            edited_at=now,
            previous_title=previous_title,
            previous_body=previous_body,
        )
    )
    return now


def edit_history(session: sa.orm.Session, kind: str, post_id: int) -> list[Edit]:
    """A post's earlier versions, oldest first (in the caller's transaction)."""
    rows = session.scalars(
        sa.select(PostEdit)
        .where(PostEdit.kind == kind, PostEdit.post_id == post_id)
        .order_by(PostEdit.edited_at, PostEdit.id)
    )
    return [Edit(r.editor, r.edited_at, r.previous_title, r.previous_body) for r in rows]


def report(
    db: Database, course_id: str, kind: str, post_id: int, reporter: str, reason: str
) -> bool:
    """Report a post the reporter can see to the course's moderators (blocking).

    False when this member had already reported it (once per member and post).
    """
    if kind not in POST_KINDS:
        raise QARejected("There is no such post.", 404, key="qa_no_post")
    reason = _text(reason, MAX_REASON, "reason")
    try:
        with db.transaction() as session:
            post, _q = _post(session, course_id, kind, post_id, Reader(reporter))
            if post.author == reporter:
                raise QARejected("You cannot report your own post.", key="qa_own_report")
            session.add(
                PostReport(
                    course_id=course_id,
                    kind=kind,
                    post_id=post_id,
                    reporter=reporter,
                    reason=reason,
                    created_at=datetime.now(UTC),
                )
            )
    except IntegrityError:
        return False
    return True


def moderate(
    db: Database, course_id: str, kind: str, post_id: int, moderator: str, action: str
) -> int:
    """Apply a moderator's ``action`` (:data:`ACTIONS`) to a post and log it (blocking).

    The caller has checked that ``moderator`` moderates the course. Hiding, deleting or
    dismissing resolves the post's open reports. Returns the id of the question concerned.
    """
    if action not in ACTIONS or kind not in ACTIONS[action]:
        raise QARejected("That action does not apply to this post.", key="qa_bad_action")
    now = datetime.now(UTC)
    with db.transaction() as session:
        post, q = _post(session, course_id, kind, post_id, Reader(moderator, moderator=True))
        if action == "hide":
            post.status = HIDDEN
        elif action == "show":
            post.status = VISIBLE
        elif action == "delete":
            post.status = DELETED
            if isinstance(post, Answer) and q.accepted_answer_id == post.id:
                q.accepted_answer_id = None
        elif action in ("lock", "unlock"):
            q.locked = action == "lock"
        if action in ("hide", "delete", "dismiss"):
            session.execute(
                sa.update(PostReport)
                .where(
                    PostReport.kind == kind,
                    PostReport.post_id == post_id,
                    PostReport.resolved_at.is_(None),
                )
                .values(resolved_at=now)
            )
        session.add(
            ModerationAction(
                course_id=course_id,
                moderator=moderator,
                action=action,
                kind=kind,
                post_id=post_id,
                author=post.author,
                acted_at=now,
            )
        )
        return int(q.id)


def moderation_queue(db: Database, course_ids: Collection[str]) -> list[QueueItem]:
    """The reported posts of these courses that wait for a moderator, oldest report first
    (blocking)."""
    if not course_ids:
        return []
    with db.transaction() as session:
        reports = session.scalars(
            sa.select(PostReport)
            .where(PostReport.course_id.in_(list(course_ids)), PostReport.resolved_at.is_(None))
            .order_by(PostReport.created_at, PostReport.id)
        ).all()
        items: dict[tuple[str, int], dict[str, Any]] = {}
        for r in reports:
            key = (r.kind, r.post_id)
            if key not in items:
                try:
                    post, q = _post(session, r.course_id, r.kind, r.post_id)
                except QARejected:
                    continue  # deleted since: nothing left to moderate
                items[key] = {
                    "course_id": r.course_id,
                    "kind": r.kind,
                    "post_id": r.post_id,
                    "question_id": int(q.id),
                    "title": q.title,
                    "author": post.author,
                    "body_html": post.body_html,
                    "status": post.status,
                    "locked": q.locked,
                    "reports": [],
                    "edits": edit_history(session, r.kind, r.post_id),
                }
            items[key]["reports"].append(Report(r.reporter, r.reason, r.created_at))
        return [QueueItem(**item) for item in items.values()]


def moderation_log(
    db: Database, course_ids: Collection[str], limit: int = 20
) -> list[LoggedAction]:
    """The latest moderation actions in these courses, newest first (blocking)."""
    if not course_ids:
        return []
    with db.transaction() as session:
        rows = session.scalars(
            sa.select(ModerationAction)
            .where(ModerationAction.course_id.in_(list(course_ids)))
            .order_by(ModerationAction.acted_at.desc(), ModerationAction.id.desc())
            .limit(limit)
        ).all()
        return [
            LoggedAction(
                r.course_id, r.moderator, r.action, r.kind, r.post_id, r.author, r.acted_at
            )
            for r in rows
        ]
