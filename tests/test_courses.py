"""course.yaml validation: every bad input gets one message naming file, key and problem."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from hub.courses import Catalog, load_course
from hub.errors import CourseError
from hub.settings import ResourceLimits

ROOT = Path(__file__).resolve().parent.parent

GOOD = {
    "id": "intro-py",
    "title": "Intro",
    "summary": "Learn things.",
    "price": {"amount": 1000, "currency": "usd"},
    "instructors": ["ada"],
    "limits": {"memory": "512M"},
    "assignments": [{"id": "ps1", "title": "PS 1", "due": "2027-01-01T00:00:00Z"}],
}


def make_course(tmp_path: Path, data: object, folder: str = "intro-py") -> Path:
    course = tmp_path / folder
    (course / "source" / "ps1").mkdir(parents=True)
    (course / "course.yaml").write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return course


def test_good_course(tmp_path: Path) -> None:
    entry = load_course(make_course(tmp_path, GOOD))
    course = entry.course
    assert course.learner_group == "course-intro-py"
    assert course.instructor_group == "instructors-intro-py"
    assert course.resource_limits(ResourceLimits()).memory == "512M"
    assert course.resource_limits(ResourceLimits()).cpu == 1.0
    assert course.assignment("ps1") is not None


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        ({"titel": "x"}, "titel", "unknown key"),
        ({"id": "Intro_Py"}, "id", "lowercase letters, digits and single dashes"),
        ({"id": "1st-course"}, "id", "must start with a letter"),
        ({"id": "double--dash"}, "id", "single dashes"),
        ({"id": "x" * 31}, "id", "at most 30"),
        ({"price": {"amount": -5}}, "price.amount", "greater than or equal to 0"),
        ({"price": {"amount": 5, "currency": "dollars"}}, "price.currency", "pattern"),
        ({"limits": {"memory": "a lot"}}, "limits.memory", "pattern"),
        ({"limits": {"cpu": 0}}, "limits.cpu", "greater than 0"),
        (
            {"assignments": [{"id": "ps1", "title": "x", "due": "2027-01-01T00:00:00"}]},
            "assignments.0.due",
            "timezone",
        ),
        (
            {"assignments": [{"id": "ps1", "title": "a"}, {"id": "ps1", "title": "b"}]},
            "assignments",
            "listed twice",
        ),
        ({"summary": None}, "summary", "valid string"),
    ],
)
def test_bad_course(tmp_path: Path, change: dict[str, object], key: str, problem: str) -> None:
    folder = make_course(tmp_path, {**GOOD, **change})
    with pytest.raises(CourseError) as info:
        load_course(folder)
    message = str(info.value)
    assert str(folder / "course.yaml") in message
    assert f"  {key}:" in message
    assert problem in message


def test_missing_required_key(tmp_path: Path) -> None:
    data = dict(GOOD)
    del data["price"]
    with pytest.raises(CourseError, match=r"price: Field required"):
        load_course(make_course(tmp_path, data))


def test_id_must_match_folder(tmp_path: Path) -> None:
    with pytest.raises(CourseError, match="must equal the folder name 'other'"):
        load_course(make_course(tmp_path, GOOD, folder="other"))


def test_assignment_needs_source_folder(tmp_path: Path) -> None:
    data = {**GOOD, "assignments": [{"id": "ps2", "title": "PS 2"}]}
    with pytest.raises(CourseError, match="no folder source/ps2/"):
        load_course(make_course(tmp_path, data))


def test_malformed_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CourseError, match="not valid YAML"):
        load_course(make_course(tmp_path, "id: [oops\n"))
    with pytest.raises(CourseError, match=r"missing; every course folder needs a course\.yaml"):
        load_course(tmp_path / "empty")
    with pytest.raises(CourseError, match="top level must be a mapping"):
        load_course(make_course(tmp_path, "- just\n- a list\n", folder="listy"))


def test_one_bad_course_fails_the_catalog(tmp_path: Path) -> None:
    make_course(tmp_path, GOOD)
    make_course(tmp_path, {**GOOD, "id": "b", "price": "free"}, folder="b")
    with pytest.raises(CourseError, match=r"b/course.yaml"):
        Catalog.load(tmp_path)


def test_demo_catalog_is_valid() -> None:
    catalog = Catalog.load(ROOT / "courses")
    assert {"python-foundations", "algorithms-in-python"} <= set(catalog.ids())
    for entry in catalog:
        assert entry.materials_dir.is_dir(), entry.course.id
        assert entry.course.assignments, entry.course.id


def test_pacing_deadlines(tmp_path: Path) -> None:
    self_paced = {
        **GOOD,
        "pacing": "self-paced",
        "assignments": [{"id": "ps1", "title": "PS 1", "due_after": "14d"}],
    }
    course = load_course(make_course(tmp_path, self_paced)).course
    assert course.assignments[0].due_after == timedelta(days=14)
    assert load_course(make_course(tmp_path / "other", GOOD)).course.pacing == "cohort"


@pytest.mark.parametrize(
    ("pacing", "deadline", "problem"),
    [
        (
            "cohort",
            {"due_after": "14d"},
            "assignments: ps1.due_after: only for `pacing: self-paced`",
        ),
        ("self-paced", {"due": "2027-01-01T00:00:00Z"}, "assignments: ps1.due: a self-paced"),
        ("self-paced", {"due_after": "2 weeks"}, "36h (hours), 14d (days) or 2w (weeks)"),
        ("weekly", {}, "pacing: Input should be 'cohort' or 'self-paced'"),
    ],
)
def test_bad_pacing(tmp_path: Path, pacing: str, deadline: dict[str, str], problem: str) -> None:
    data = {**GOOD, "pacing": pacing, "assignments": [{"id": "ps1", "title": "PS 1", **deadline}]}
    with pytest.raises(CourseError) as err:
        load_course(make_course(tmp_path, data))
    assert problem in str(err.value)
    assert "course.yaml: invalid course" in str(err.value)
