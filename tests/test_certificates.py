"""Completion rules and certificates (issue #13, item 6), without a hub.

The browser journey (tests/browser/test_instructor_journey_chromium.py) proves the whole flow:
hand grade, feedback, certificate, verification signed out. Here: the rule's validation, who
passes, idempotent issuing, and that a refund revokes a certificate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.certificates import (
    CERTIFICATE_ID_PATTERN,
    evaluate,
    find_certificate,
    issue_certificates,
    learner_certificates,
)
from hub.courses import Catalog, Course, load_course
from hub.errors import CourseError
from hub.store import Database, Entitlement, upgrade, utcnow

ROOT = Path(__file__).resolve().parent.parent
BASE: dict[str, Any] = {
    "id": "intro-py",
    "title": "Intro",
    "summary": "Learn things.",
    "price": {"amount": 1000, "currency": "usd"},
    "assignments": [{"id": "ps1", "title": "PS 1"}, {"id": "ps2", "title": "PS 2"}],
}


def course_with(completion: Any) -> Course:
    return Course.model_validate({**BASE, "completion": completion})


def row(
    student: str, assignment: str, score: float, max_score: float = 10, late: float = 0
) -> dict[str, Any]:
    return {"student": student, "assignment": assignment, "score": score, "max_score": max_score,
            "late_penalty": late}  # fmt: skip


@pytest.mark.parametrize(
    ("completion", "problem"),
    [
        ({}, "give min_percent_each"),
        ({"min_percent": 60}, "completion.min_percent: unknown key"),
        ({"min_percent_each": 160}, "completion.min_percent_each: Input should be less than"),
        ({"min_percent_each": 60, "assignments": ["ps9"]}, "'ps9' is not an assignment"),
        ("every assignment", "completion: Input should be a valid dictionary"),
    ],
)
def test_a_malformed_rule_says_what_is_wrong(tmp_path: Path, completion: Any, problem: str) -> None:
    folder = tmp_path / "intro-py"
    for assignment in ("ps1", "ps2"):
        (folder / "source" / assignment).mkdir(parents=True)
    (folder / "course.yaml").write_text(yaml.safe_dump({**BASE, "completion": completion}))
    with pytest.raises(CourseError) as error:
        load_course(folder)
    assert str(folder / "course.yaml") in str(error.value)
    assert problem in str(error.value)


def test_the_demo_courses_rules_are_valid() -> None:
    courses = {entry.course.id: entry.course for entry in Catalog.load(ROOT / "courses")}
    assert all(course.completion is not None for course in courses.values())


def test_every_assignment_must_reach_the_minimum_and_a_missing_one_counts_zero() -> None:
    course = course_with({"min_percent_each": 60})
    results = {r.learner: r for r in evaluate(course, [
        row("ann", "ps1", 6), row("ann", "ps2", 10),   # both at least 60 %
        row("bob", "ps1", 10), row("bob", "ps2", 5.9),  # one below
        row("cy", "ps1", 10),                           # ps2 never graded: 0 %
        row("dee", "ps1", 7, late=2), row("dee", "ps2", 9),  # 7 - 2 late = 50 %
    ])}  # fmt: skip
    assert {name: r.passed for name, r in results.items()} == {
        "ann": True, "bob": False, "cy": False, "dee": False,
    }  # fmt: skip
    assert results["cy"].percents == {"ps1": 100.0, "ps2": 0.0}


def test_a_total_rule_and_a_chosen_assignment_list() -> None:
    total = course_with({"min_percent_total": 70})
    passed = {r.learner: r.passed for r in evaluate(total, [
        row("ann", "ps1", 10), row("ann", "ps2", 4), row("bob", "ps1", 10), row("bob", "ps2", 3.9),
    ])}  # fmt: skip
    assert passed == {"ann": True, "bob": False}
    only_ps1 = course_with({"min_percent_each": 60, "assignments": ["ps1"]})
    (ann,) = evaluate(only_ps1, [row("ann", "ps1", 6)])
    assert ann.passed and ann.percents == {"ps1": 60.0}


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    return Database(url)


def entitle(db: Database, user: str, *, status: str, reason: str, source: str = "purchase") -> None:
    now = utcnow()
    with db.transaction() as session:
        session.add(Entitlement(username=user, course_id="intro-py", source=source, status=status,
                                status_reason=reason, created_at=now, updated_at=now))  # fmt: skip


def test_certificates_are_issued_once_with_unguessable_ids_and_a_refund_revokes_them(
    db: Database,
) -> None:
    course = course_with({"min_percent_each": 60})
    results = evaluate(course, [
        row("ann", "ps1", 9), row("ann", "ps2", 9), row("bob", "ps1", 9), row("bob", "ps2", 9),
        row("cy", "ps1", 1), row("cy", "ps2", 1),
    ])  # fmt: skip
    assert issue_certificates(db, course, results) == ["ann", "bob"]
    assert issue_certificates(db, course, results) == []  # a second feedback run: no new ones
    ann, bob = (
        learner_certificates(db, "ann")["intro-py"],
        learner_certificates(db, "bob")["intro-py"],
    )
    assert ann != bob and learner_certificates(db, "cy") == {}
    assert re.fullmatch(CERTIFICATE_ID_PATTERN, ann)

    entitle(db, "ann", status="active", reason="paid")
    entitle(db, "bob", status="revoked", reason="refunded")
    shown = find_certificate(db, ann)
    assert shown is not None and shown.status == "valid"
    assert shown.learner == "ann" and shown.course_title == "Intro" and shown.percent == 90.0
    refunded = find_certificate(db, bob)
    assert refunded is not None and refunded.status == "revoked"
    assert refunded.revoked_reason == "refunded"
    # A membership that simply ended does not take back what was earned.
    entitle(db, "ann", status="revoked", reason="canceled", source="subscription")
    assert find_certificate(db, ann).status == "valid"  # type: ignore[union-attr]
    assert find_certificate(db, "A" * 22) is None
