"""The access rule (`hub.access.policy.Member`) and the entitlement words, without a hub."""

from __future__ import annotations

import pytest

from hub.access import (
    ACCESS_STATUSES,
    EntitlementReason,
    EntitlementStatus,
    Member,
    PurchaseStatus,
)
from hub.access.policy import is_course_id, listed_instructor_of
from hub.courses import Course, Price
from hub.i18n import MESSAGES

COURSE = "python-101"
OTHER = "data-201"


def rights(member: Member, course_id: str = COURSE) -> tuple[bool, bool, bool, bool]:
    """(learns, teaches, administers, may_open) of ``member`` in ``course_id``."""
    return (
        member.learns(course_id),
        member.teaches(course_id),
        member.administers(course_id),
        member.may_open(course_id),
    )


NOTHING = (False, False, False, False)


@pytest.mark.parametrize(
    ("member", "here", "elsewhere"),
    [
        # A learner opens the course but does not run it.
        (
            Member("alice", groups=frozenset({f"course-{COURSE}"})),
            (True, False, False, True),
            NOTHING,
        ),
        (Member("alice", entitled=frozenset({COURSE})), (True, False, False, True), NOTHING),
        # An instructor (Hub group, or listed in course.yaml before the sync) runs it.
        (
            Member("ines", groups=frozenset({f"instructors-{COURSE}"})),
            (False, True, True, True),
            NOTHING,
        ),
        (Member("ines", listed=frozenset({COURSE})), (False, True, True, True), NOTHING),
        # An admin runs every course without teaching it.
        (Member("root", admin=True), (False, False, True, True), (False, False, True, True)),
        # Nobody gets nothing.
        (Member("mallory"), NOTHING, NOTHING),
    ],
    ids=[
        "learner-group",
        "learner-entitled",
        "instructor-group",
        "instructor-listed",
        "admin",
        "none",
    ],
)
def test_roles(
    member: Member,
    here: tuple[bool, bool, bool, bool],
    elsewhere: tuple[bool, bool, bool, bool],
) -> None:
    assert rights(member) == here
    assert rights(member, OTHER) == elsewhere


@pytest.mark.parametrize(
    "groups",
    [
        {"course-python-1010"},  # a longer course id
        {"course-python"},  # a prefix of the id
        {"Course-python-101", "course-Python-101"},  # case
        {"course-python-101 ", " course-python-101"},  # whitespace
        {"instructor-python-101", "instructors-python-1010"},
        {"python-101", "course-", "instructors-"},
        {"course-python\u2010101"},  # a look-alike hyphen
    ],
)
def test_near_miss_groups_give_nothing(groups: set[str]) -> None:
    assert rights(Member("mallory", groups=frozenset(groups))) == NOTHING


@pytest.mark.parametrize(
    "course_id",
    [
        "",
        "Python-101",
        "python-101\n",
        "python-101/../data-201",
        "python--101",
        "-python",
        "x" * 31,
        "python 101",
        "python\u2010101",
    ],
)
def test_malformed_course_ids_open_nothing_even_for_admins(course_id: str) -> None:
    # Groups and grants spelled exactly as the hostile id, so only the id check stands between.
    everyone = Member(
        "root",
        admin=True,
        groups=frozenset({f"course-{course_id}", f"instructors-{course_id}"}),
        entitled=frozenset({course_id}),
        listed=frozenset({course_id}),
    )
    assert not is_course_id(course_id)
    assert rights(everyone, course_id) == NOTHING


def test_hostile_names_are_compared_exactly() -> None:
    course = Course(
        id=COURSE,
        title="Python",
        summary="s",
        price=Price(amount=0, currency="usd"),
        instructors=["ines", "d@ve.o'neil"],
    )
    assert listed_instructor_of("d@ve.o'neil", [course]) == {COURSE}
    for name in ("Ines", "ines ", "ine", "d@ve.o\u2019neil", "", "ines,d@ve.o'neil"):
        assert listed_instructor_of(name, [course]) == frozenset()
    # A name that looks like a group gives no group.
    assert not Member(f"instructors-{COURSE}").may_open(COURSE)


def test_from_hub_model_reads_name_admin_and_groups() -> None:
    member = Member.from_hub_model(
        {"name": "ines", "admin": None, "groups": [f"instructors-{COURSE}"], "kind": "user"}
    )
    assert member == Member("ines", groups=frozenset({f"instructors-{COURSE}"}))
    assert Member.from_hub_model({"name": "root", "admin": True, "groups": None}).admin


def test_statuses_keep_their_stored_values() -> None:
    # These strings are in database rows and a CHECK constraint: changing one is a migration.
    assert [s.value for s in EntitlementStatus] == ["active", "pending", "past_due", "revoked"]
    assert ACCESS_STATUSES == {"active", "past_due"}
    assert (
        EntitlementStatus.PAST_DUE == "past_due" and str(EntitlementStatus.PAST_DUE) == "past_due"
    )
    assert {r.value for r in EntitlementReason} >= {
        "paid",
        "refunded",
        "dispute_open",
        "dispute_lost",
        "dispute_won",
        "payment_failed",
        "awaiting_payment",
    }


def test_every_purchase_status_has_a_label_in_every_language() -> None:
    for status in PurchaseStatus:
        assert status.i18n_key == f"status_{status.value}"
        assert set(MESSAGES[status.i18n_key]) == {"en", "zh-CN"}
