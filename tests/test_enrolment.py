"""Rosters for enrolling a class (hub/enrolment.py), without a hub: every line is checked, a bad
line is reported with its number and reason, and the good lines are all kept."""

from __future__ import annotations

import pytest

from hub.enrolment import (
    MAX_ROSTER_LINES,
    Action,
    Actor,
    EnrolmentReport,
    LineError,
    RosterRefused,
    parse_roster,
    roster_from_names,
)
from hub.i18n import translator

EN = translator("en")
ZH = translator("zh-CN")


def test_a_spreadsheet_export_is_read_with_its_header_comments_and_trailing_commas() -> None:
    text = (
        "\ufeffUsername,Email\n"
        "# the autumn class\n"
        "alice,alice@example.org\n"
        "\n"
        "  Bob ,\n"
        '"carol","carol@example.org",\n'
    )
    good, errors = parse_roster(text)
    assert errors == []
    assert [(r.line, r.username, r.email) for r in good] == [
        (3, "alice", "alice@example.org"),
        (5, "bob", ""),
        (6, "carol", "carol@example.org"),
    ]


def test_each_bad_line_is_reported_and_the_good_ones_are_kept() -> None:
    text = (
        "alice\n"
        "bob smith\n"
        "carol,not-an-address\n"
        "dave,dave@example.org,extra\n"
        "alice\n"
        ",erin@example.org\n"
        "frank\u200b\n"
        "grace\n"
    )
    good, errors = parse_roster(text)
    assert [r.username for r in good] == ["alice", "grace"]
    assert [(e.line, e.key) for e in errors] == [
        (2, "enrol_bad_username"),
        (3, "enrol_bad_email"),
        (4, "enrol_malformed"),
        (5, "enrol_duplicate"),
        (6, "enrol_missing_username"),
        (7, "enrol_bad_username"),
    ]
    assert errors[3].message(EN) == "line 5 (alice): listed already on line 1"
    assert errors[0].message(ZH).startswith("第 2 行（bob smith）：")  # noqa: RUF001


def test_a_roster_too_long_or_empty_is_refused_whole() -> None:
    too_many = "\n".join(f"learner-{i}" for i in range(MAX_ROSTER_LINES + 1))
    with pytest.raises(RosterRefused) as refused:
        parse_roster(too_many)
    assert refused.value.message(EN) == (
        f"The list has more than {MAX_ROSTER_LINES} members: split it into smaller lists."
    )
    with pytest.raises(RosterRefused) as empty:
        parse_roster("# nobody yet\n\n")
    assert empty.value.key == "enrol_empty"
    with pytest.raises(RosterRefused) as large:
        parse_roster("x" * (1024 * 1024 + 1))
    assert large.value.key == "enrol_too_large"


def test_names_from_the_command_line_are_one_member_each() -> None:
    good, errors = roster_from_names(["alice", "bob,carol"])
    assert [r.username for r in good] == ["alice"]
    assert [e.key for e in errors] == ["enrol_bad_username"]


def test_the_report_says_what_changed_in_both_languages() -> None:
    report = EnrolmentReport(
        Action.REVOKE,
        "python-foundations",
        Actor.INSTRUCTOR,
        changed=["alice"],
        unchanged=["bob"],
        still_in=["carol"],
        errors=[LineError(4, "zed", "enrol_unknown_user", {"user": "zed"})],
    )
    lines = report.lines(EN)
    assert lines[0] == (
        "python-foundations: 1 revoked, 1 had no access, 1 still enrolled another way, "
        "1 lines left out."
    )
    assert "revoked: alice can no longer open python-foundations (their files are kept)" in lines
    assert any("carol keep python-foundations through a purchase" in line for line in lines)
    assert lines[-1].startswith("line 4 (zed): there is no account zed")
    assert all(line for line in report.lines(ZH))
    assert "已撤销：alice" in "\n".join(report.lines(ZH))  # noqa: RUF001
