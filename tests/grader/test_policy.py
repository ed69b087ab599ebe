"""The grading policy in force: settings' defaults, the course's overrides, one owner."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from grader.policy import grading_parallelism, sandbox_policy
from grader.sandbox import SandboxPolicy
from hub.courses import load_course
from hub.errors import CourseError, SettingsError
from hub.settings import Settings, load_settings

COURSE = {
    "id": "intro-py",
    "title": "Intro",
    "summary": "Learn things.",
    "price": {"amount": 0},
    "limits": {"memory": "1536M"},
    "assignments": [{"id": "ps1", "title": "PS 1"}],
}


def course_with(tmp_path: Path, **grading: object) -> Path:
    folder = tmp_path / "intro-py"
    (folder / "source" / "ps1").mkdir(parents=True)
    (folder / "course.yaml").write_text(yaml.safe_dump({**COURSE, "grading": grading}))
    return folder


def settings_with(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "learnhub.yaml"
    path.write_text(text)
    return load_settings(path, {})


def test_defaults_come_from_settings_and_the_course_server(tmp_path: Path) -> None:
    settings = load_settings(None, {})
    course = load_course(course_with(tmp_path)).course
    policy = sandbox_policy(settings, course)
    # No sandbox memory anywhere: the course server's limit, as before this section existed.
    assert policy.memory == "1536M"
    assert (policy.cpus, policy.pids, policy.cell_timeout, policy.notebook_timeout) == (
        1.0,
        128,
        30,
        300.0,
    )
    assert policy.image == settings.spawner.image
    # A policy built without settings has the settings' defaults, not a second set.
    bare = SandboxPolicy()
    assert (bare.cpus, bare.pids, bare.cell_timeout) == (1.0, 128, 30)
    assert grading_parallelism(settings, course) >= 2


def test_course_overrides_settings(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path, "grading:\n  sandbox:\n    memory: 256M\n    pids: 64\n    parallel: 3\n"
    )
    course = load_course(course_with(tmp_path, sandbox={"pids": 32, "cell_timeout": 5})).course
    policy = sandbox_policy(settings, course)
    assert (policy.memory, policy.pids, policy.cell_timeout) == ("256M", 32, 5)
    assert grading_parallelism(settings, course) == 3
    assert grading_parallelism(settings, course, requested=1) == 1


def test_bad_limits_are_refused_where_they_are_written(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"grading\.sandbox\.pids"):
        settings_with(tmp_path, "grading:\n  sandbox:\n    pids: 1\n")
    with pytest.raises(SettingsError, match="unknown key"):
        settings_with(tmp_path, "grading:\n  sandbox:\n    memroy: 1G\n")
    with pytest.raises(CourseError, match="pids"):
        load_course(course_with(tmp_path / "a", sandbox={"pids": 1}))
    with pytest.raises(CourseError, match="unknown key"):
        load_course(course_with(tmp_path / "b", sandbox={"memroy": "1G"}))
