"""Self-paced deadlines count from the buyer's own purchase, through nbgrader's extensions.

A learner buys two courses long after a cohort date, through the real service, the Stripe
stand-in and genuinely signed webhook events: ``python-101`` is self-paced (``due_after:
14d``), ``data-201`` a cohort course whose deadline has passed. The grading side then reads the
enrolment from the purchase record, and nbgrader's own late-penalty step (with LearnHub's
plugin, as autograde runs it) measures lateness from the learner's deadline. Before pacing,
every course was a cohort course: the self-paced buyer was penalised from day one, like the
cohort buyer here.
"""

from __future__ import annotations

import dataclasses
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.preprocessors import AssignLatePenalties
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from grader.course import GradingCourse
from grader.gradebook import ensure_gradebook
from grader.sandbox import SandboxPolicy
from harness.stripe_standin import StripeStandIn
from hub.access.hub_groups import make_access_sync
from hub.courses import Catalog, Course, CourseEntry
from hub.pacing import SELF_PACED_ANCHOR
from hub.service.app import make_app
from hub.service.context import build_context
from hub.settings import Settings
from hub.store import Database
from tests.billing.conftest import PREFIX, FakeHub, Service
from tests.billing.test_webhook import checkout, entitlements

LEARNER = "alice"
ASSIGNMENT = "ps1"
COHORT_DUE = datetime(2026, 1, 10, 23, 59, tzinfo=UTC)
GRADING = {"late_penalty_percent_per_day": 10, "max_late_penalty_percent": 50}


def _entry(course_id: str, pacing: str, deadline: dict[str, object]) -> CourseEntry:
    course = Course.model_validate(
        {
            "id": course_id,
            "title": f"Course {course_id}",
            "summary": "A course.",
            "price": {"amount": 4900},
            "pacing": pacing,
            "assignments": [{"id": ASSIGNMENT, "title": "Problem set 1", **deadline}],
            "grading": GRADING,
        }
    )
    return CourseEntry(course=course, folder=Path("/nonexistent") / course_id)


SELF_PACED = _entry("python-101", "self-paced", {"due_after": "14d"})
COHORT = _entry("data-201", "cohort", {"due": COHORT_DUE.isoformat()})


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the entitlement rows are the billing tests' (both databases) already."""
    return f"sqlite:///{tmp_path / 'learnhub.sqlite'}"


@pytest.fixture
def catalog() -> Catalog:
    """The self-paced course and the cohort course."""
    return Catalog([SELF_PACED, COHORT])


def grading_course(entry: CourseEntry, root: Path, db_url: str) -> GradingCourse:
    """The course's grading side in ``root``, reading enrolments from ``db_url``; one graded
    cell of 10 points in the gradebook, as releasing the assignment records it."""
    folder = root / "courses" / entry.course.id
    (folder / "source" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), folder / "source" / ASSIGNMENT / "ps1.ipynb")
    course = GradingCourse(
        entry=CourseEntry(course=entry.course, folder=folder),
        root=root / entry.course.id,
        instructor_copy=root / "formgrader" / entry.course.id,
        gradebook_url=f"sqlite:///{root / f'{entry.course.id}.db'}",
        exchange_url="",
        token="",
        policy=SandboxPolicy(),
        parallel=1,
        learnhub_db_url=db_url,
    )
    ensure_gradebook(course.gradebook_url)
    with Gradebook(course.gradebook_url, entry.course.id) as gb:
        gb.update_or_create_assignment(ASSIGNMENT)
        gb.update_or_create_notebook(ASSIGNMENT, ASSIGNMENT)
        gb.update_or_create_grade_cell(
            "tests", ASSIGNMENT, ASSIGNMENT, max_score=10, cell_type="code"
        )
    return course


def collected(course: GradingCourse, student: str) -> None:
    """A collected submission of ``student`` (what `learnhub grader collect` leaves)."""
    folder = course.root / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), folder / f"{ASSIGNMENT}.ipynb")


def late_penalty(course: GradingCourse, student: str, submitted_at: datetime) -> float:
    """Full marks handed in at ``submitted_at``: the penalty nbgrader's autograde step assigns
    (its AssignLatePenalties with the course's configuration and LearnHub's plugin)."""
    with Gradebook(course.gradebook_url, course.course_id) as gb:
        # What autograde records first: the learner, the time stamp, then the scores.
        gb.update_or_create_student(student)
        gb.update_or_create_submission(ASSIGNMENT, student, timestamp=submitted_at)
        gb.find_grade("tests", ASSIGNMENT, ASSIGNMENT, student).auto_score = 10
        gb.db.commit()
    step = AssignLatePenalties(config=course.nbgrader_config())
    resources = {
        "nbgrader": {
            "notebook": ASSIGNMENT,
            "assignment": ASSIGNMENT,
            "student": student,
            "db_url": course.gradebook_url,
        }
    }
    step.preprocess(nbformat.v4.new_notebook(), resources)
    with Gradebook(course.gradebook_url, course.course_id) as gb:
        notebook = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
        return float(notebook.late_submission_penalty or 0)


def deadline(course: GradingCourse, student: str) -> datetime:
    """The learner's deadline in the gradebook (nbgrader's: due date plus extension)."""
    with Gradebook(course.gradebook_url, course.course_id) as gb:
        due = gb.find_submission(ASSIGNMENT, student).duedate
    assert due is not None
    return due.replace(tzinfo=UTC)


async def test_self_paced_buyer_gets_deadlines_from_their_own_purchase(
    service: Service, standin: StripeStandIn, db_url: str, tmp_path: Path
) -> None:
    for course_id in ("python-101", "data-201"):
        session_id = await checkout(service, LEARNER, course_id)
        await service.send_all(standin.sim.complete_checkout(session_id))
    purchases = {e.course_id: e for e in entitlements(service) if e.username == LEARNER}
    assert {c: e.status for c, e in purchases.items()} == {
        "python-101": "active",
        "data-201": "active",
    }
    enrolled = purchases["python-101"].created_at
    assert enrolled > COHORT_DUE, "bought after the cohort date"

    self_paced = grading_course(SELF_PACED, tmp_path, db_url)
    assert self_paced.enrolments() == {LEARNER: enrolled}
    collected(self_paced, LEARNER)
    self_paced.prepare()  # what every grading command does first
    assert deadline(self_paced, LEARNER) == enrolled + timedelta(days=14)
    with Gradebook(self_paced.gradebook_url, self_paced.course_id) as gb:
        stored = gb.find_assignment(ASSIGNMENT).duedate
        assert stored.replace(tzinfo=UTC) == SELF_PACED_ANCHOR + timedelta(days=14)
    assert late_penalty(self_paced, LEARNER, enrolled + timedelta(days=13)) == 0
    # A started day after their own deadline: 10 % of 10 points.
    assert late_penalty(self_paced, LEARNER, enrolled + timedelta(days=14, hours=1)) == 1.0

    cohort = grading_course(COHORT, tmp_path, db_url)
    collected(cohort, LEARNER)
    cohort.prepare()
    # The same work a day after buying is late in the cohort course: capped at 50 %.
    assert late_penalty(cohort, LEARNER, enrolled + timedelta(days=1)) == 5.0
    assert deadline(cohort, LEARNER) == COHORT_DUE


async def test_granted_hours_add_to_the_learners_own_deadline(
    service: Service, standin: StripeStandIn, db_url: str, tmp_path: Path
) -> None:
    session_id = await checkout(service, LEARNER, "python-101")
    await service.send_all(standin.sim.complete_checkout(session_id))
    course = grading_course(SELF_PACED, tmp_path, db_url)
    enrolled = course.enrolments()[LEARNER]
    course.grant_extension(ASSIGNMENT, LEARNER, hours=48)
    assert deadline(course, LEARNER) == enrolled + timedelta(days=16)
    course.prepare()  # computed again: the granted hours stay
    assert deadline(course, LEARNER) == enrolled + timedelta(days=16)
    course.grant_extension(ASSIGNMENT, LEARNER, hours=0)
    assert deadline(course, LEARNER) == enrolled + timedelta(days=14)
    # Someone with no enrolment on record (an instructor trying it) is never late.
    collected(course, "bob")
    course.prepare()
    assert deadline(course, "bob") > datetime.now(UTC) + timedelta(days=13)


async def test_course_and_checkout_pages_show_the_buyers_deadlines(
    db: Database, catalog: Catalog, fake_hub: FakeHub, test_user_header: None
) -> None:
    settings = Settings.model_validate({"payments": {"provider": "demo"}})
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    sync = make_access_sync(db, catalog, settings, fake_hub)
    ctx = build_context(settings, catalog, db, None, sync, prefix=PREFIX, service_url=url)
    server = HTTPServer(make_app(ctx))
    server.add_sockets(sockets)
    me = {"X-Test-User": LEARNER}
    passed = "1 of this course&#39;s 1 deadlines have passed"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            page = (await http.get(f"{PREFIX}courses/python-101")).text
            assert "due 14 days after you enrol" in page and "Self-paced" in page
            assert "learnhub-deadlines-passed" not in page
            page = (await http.get(f"{PREFIX}courses/python-101?lang=zh-CN")).text
            assert "报名后 14 天截止" in page
            page = (await http.get(f"{PREFIX}courses/data-201?lang=en", headers=me)).text
            assert passed in page and 'datetime="2026-01-10T23:59:00+00:00"' in page

            for course_id, shown in (("python-101", "due 14 days after you enrol"),
                                     ("data-201", passed)):  # fmt: skip
                created = await http.post(f"{PREFIX}checkout/{course_id}", headers=me)
                assert created.status_code == 303
                checkout_page = await http.get(created.headers["Location"], headers=me)
                assert "Your deadlines" in checkout_page.text
                assert shown in checkout_page.text
    finally:
        server.stop()
        await server.close_all_connections()
        await ctx.events.aclose()
        await ctx.billing.aclose()


def test_extensions_survive_a_change_of_pacing_both_ways(tmp_path: Path) -> None:
    # A cohort course of an earlier LearnHub: its extension lives only in the gradebook.
    cohort = grading_course(COHORT, tmp_path, "")
    with Gradebook(cohort.gradebook_url, cohort.course_id) as gb:
        gb.update_or_create_student("bob")
        gb.update_or_create_submission(ASSIGNMENT, "bob")
        gb.grant_extension(ASSIGNMENT, "bob", hours=24)
    cohort.prepare()
    assert deadline(cohort, "bob") == COHORT_DUE + timedelta(hours=24)

    paced = _entry("data-201", "self-paced", {"due_after": "14d"})
    self_paced = dataclasses.replace(
        cohort, entry=CourseEntry(course=paced.course, folder=cohort.entry.folder)
    )
    before = datetime.now(UTC)
    self_paced.prepare()  # no enrolment on record: counted from now, plus the granted day
    assert deadline(self_paced, "bob") >= before + timedelta(days=15) - timedelta(seconds=1)

    cohort.prepare()  # and back: the cohort date plus the granted day, nothing of the enrolment
    assert deadline(cohort, "bob") == COHORT_DUE + timedelta(hours=24)
