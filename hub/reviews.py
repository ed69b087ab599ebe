"""Course community: reviews (members rate a course 1-5 and say why) and announcements.

One review per member and course (writing again replaces it). The average rating is the
operator's satisfaction figure U; until anyone reviews, U is missing, never guessed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from hub.errors import LearnHubError
from hub.mail import notices
from hub.markdown import render
from hub.qa import keep_previous
from hub.store import Database
from hub.store.usage_models import Announcement, CourseReview

MAX_REVIEW_CHARS = 2000

_changes = itertools.count(1)
_generation = 0


def generation() -> int:
    """A number that changes whenever this process changes a review or an announcement.

    Pages rendered from reviews and announcements (the anonymous course pages the service keeps
    rendered) note it when they read them and are rendered again once it differs. The service
    is the only writer of both.
    """
    return _generation


def _changed() -> None:
    """Called after every committed write of a review or an announcement."""
    global _generation  # one counter per process; next() hands out each value once
    _generation = next(_changes)


class ReviewRejected(LearnHubError):
    """The review is not acceptable as written; the message says why."""


@dataclass(frozen=True)
class Review:
    """A review as pages show it."""

    username: str
    rating: int
    text: str
    updated_at: datetime


def validate(rating_text: str, text: str) -> tuple[int, str]:
    """The rating as an int 1-5 and the trimmed text; :class:`ReviewRejected` otherwise."""
    try:
        rating = int(rating_text)
    except ValueError:
        raise ReviewRejected("The rating must be a whole number from 1 to 5.") from None
    if not 1 <= rating <= 5:
        raise ReviewRejected("The rating must be a whole number from 1 to 5.")
    text = text.strip()
    if len(text) > MAX_REVIEW_CHARS:
        raise ReviewRejected(f"Please keep the review under {MAX_REVIEW_CHARS} characters.")
    return rating, text


def save_review(db: Database, course_id: str, username: str, rating: int, text: str) -> None:
    """Write (or replace) the member's review of the course (blocking)."""
    with db.transaction() as session:
        row = session.scalars(
            sa.select(CourseReview).where(
                CourseReview.course_id == course_id, CourseReview.username == username
            )
        ).first()
        if row is None:
            row = CourseReview(course_id=course_id, username=username)
            session.add(row)
        row.rating = rating
        row.text = text
        row.updated_at = datetime.now(UTC)
    _changed()


def course_reviews(db: Database, course_id: str, limit: int = 20) -> list[Review]:
    """The course's most recent reviews (blocking)."""
    with db.transaction() as session:
        rows = session.scalars(
            sa.select(CourseReview)
            .where(CourseReview.course_id == course_id)
            .order_by(CourseReview.updated_at.desc())
            .limit(limit)
        ).all()
        return [Review(r.username, r.rating, r.text, r.updated_at) for r in rows]


def rating_summary(db: Database, course_id: str | None = None) -> tuple[float | None, int]:
    """(average rating, number of reviews) of one course, or of all courses (blocking)."""
    query = sa.select(sa.func.avg(CourseReview.rating), sa.func.count(CourseReview.id))
    if course_id is not None:
        query = query.where(CourseReview.course_id == course_id)
    with db.transaction() as session:
        average, count = session.execute(query).one()
    return (float(average) if average is not None else None, int(count))


MAX_ANNOUNCEMENT_CHARS = 4000


@dataclass(frozen=True)
class Notice:
    """An announcement as pages show it."""

    author: str
    #: The Markdown the instructor wrote.
    text: str
    posted_at: datetime
    #: ``text`` rendered (safe HTML, :func:`hub.markdown.render`).
    html: str = ""
    id: int = 0
    #: When an instructor last edited it (None: never).
    edited_at: datetime | None = None


def _announcement_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise ReviewRejected("An announcement needs some text.")
    if len(text) > MAX_ANNOUNCEMENT_CHARS:
        raise ReviewRejected(
            f"Please keep announcements under {MAX_ANNOUNCEMENT_CHARS} characters."
        )
    return text


def post_announcement(db: Database, course_id: str, author: str, text: str) -> None:
    """Post an instructor's announcement (Markdown) to a course (blocking); rejects empty or
    long text. It is stored with its rendered HTML."""
    text = _announcement_text(text)
    with db.transaction() as session:
        posted = datetime.now(UTC)
        session.add(
            Announcement(
                course_id=course_id,
                author=author,
                text=text,
                text_html=render(text),
                posted_at=posted,
            )
        )
        notices.on_announcement(session, course_id, author, text, posted)  # mail (hub/mail)
    _changed()


def edit_announcement(
    db: Database, course_id: str, announcement_id: int, editor: str, text: str
) -> bool:
    """Replace an announcement's Markdown (blocking): rendered again, marked edited, the
    previous text kept in ``post_edits``. The caller has checked that ``editor`` teaches or
    administers the course (any of its instructors may correct any of its announcements). No
    new notice is mailed: an edit is a correction, not news. False when the course has no such
    announcement; an unchanged text changes nothing.
    """
    text = _announcement_text(text)
    html = render(text)
    with db.transaction() as session:
        row = session.get(Announcement, announcement_id)
        if row is None or row.course_id != course_id:
            return False
        if row.text == text:
            return True
        now = keep_previous(session, course_id, "announcement", announcement_id, editor, row.text)
        row.text, row.text_html, row.edited_at = text, html, now
    _changed()
    return True


def announcements(db: Database, course_id: str, limit: int = 5) -> list[Notice]:
    """The course's latest announcements, newest first (blocking)."""
    with db.transaction() as session:
        rows = session.scalars(
            sa.select(Announcement)
            .where(Announcement.course_id == course_id)
            .order_by(Announcement.posted_at.desc(), Announcement.id.desc())
            .limit(limit)
        ).all()
        return [
            Notice(r.author, r.text, r.posted_at, r.text_html, id=r.id, edited_at=r.edited_at)
            for r in rows
        ]
