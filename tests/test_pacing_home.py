"""The learner's home page shows a self-paced course's deadlines counted from their enrolment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa

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
