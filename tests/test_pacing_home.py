"""The learner's home page: a self-paced course's deadlines counted from their enrolment, and
what it shows while LearnHub's database cannot be used."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hub.course_scaffold import scaffold_course
from hub.home import home_courses
from hub.settings import Settings
from hub.store import Database, Entitlement, upgrade
from hub.store import repository as repo


def test_home_shows_the_learners_own_deadline(tmp_path: Path) -> None:
    courses = tmp_path / "courses"
    courses.mkdir()
    scaffold_course(courses, "intro-python")  # self-paced, ps1 due 14 days after enrolment
    settings = Settings.model_validate(
        # The service runs as this test (its database is this test's file, not learnhub's).
        {
            "courses_dir": str(courses),
            "hub": {"data_dir": str(tmp_path / "var"), "service_user": ""},
        }
    )
    upgrade(settings.learnhub_db_url)
    db = Database(settings.learnhub_db_url)
    try:
        with db.transaction() as session:
            repo.set_manual_access(session, "ada", "intro-python", active=True, reason="test")
        with db.transaction() as session:
            enrolled = session.scalars(sa.select(Entitlement.created_at)).one()
    finally:
        db.dispose()

    def page(name: str) -> dict[str, object]:
        user = SimpleNamespace(
            name=name, admin=False, groups=[SimpleNamespace(name="course-intro-python")]
        )
        (course,) = home_courses(settings)(user)["mine"]
        (row,) = course["assignments"]
        return dict(row)

    due = enrolled + timedelta(days=14)
    assert page("ada")["iso"] == due.isoformat()
    # Access with no enrolment on record (e.g. an admin): no date to show.
    assert page("grace")["iso"] == ""


def test_home_without_a_usable_database_hides_its_notes_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database the Hub opens but cannot read (here a file with none of LearnHub's tables:
    each statement fails with sqlalchemy's OperationalError, as one locked past the busy
    timeout or a PostgreSQL that does not answer would) is found by the page's first read:
    the page keeps the learner's courses, says their records cannot be shown, and the log has
    one warning with the database's reason, not one traceback per read."""
    courses = tmp_path / "courses"
    courses.mkdir()
    scaffold_course(courses, "intro-python")
    settings = Settings.model_validate(
        {
            "courses_dir": str(courses),
            "hub": {"data_dir": str(tmp_path / "var"), "service_user": ""},
        }
    )
    database = Path(str(make_url(settings.learnhub_db_url).database))
    database.parent.mkdir(parents=True)
    database.touch()
    user = SimpleNamespace(
        name="ada", admin=False, groups=[SimpleNamespace(name="course-intro-python")]
    )
    caplog.set_level(logging.DEBUG, logger="learnhub")
    page = home_courses(settings)(user)
    assert page["error"] == "records_unavailable"
    assert [course["id"] for course in page["mine"]] == ["intro-python"]
    logged = [r for r in caplog.records if r.name.startswith("learnhub")]
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in logged] == [
        ("WARNING", "learnhub records unavailable", None)
    ], [r.getMessage() for r in logged]
    assert logged[0].__dict__["user"] == "ada"
    assert logged[0].__dict__["reason"].startswith("unreachable: no such table"), logged[0].__dict__
