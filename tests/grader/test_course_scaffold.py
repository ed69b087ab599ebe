"""`learnhub courses new` then `learnhub courses validate --run`: from nothing to a checked
assignment, on real nbgrader and the real grading sandbox.

The scaffold's assignment must pass every check as written (the reference scores full marks,
the release and a cheater nothing). A test cell that the blank release passes is an error that
names the cell: learners would get points for handing in nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from grader.checks.dynamic import RELEASE, check_assignments
from hub.cli import main
from hub.course_scaffold import ASSIGNMENT
from hub.courses import load_course
from tests.grader.conftest import short_policy

pytestmark = pytest.mark.docker

COURSE = "intro-python"
#: A test cell that passes whatever the learner writes.
FREE_POINTS = 'assert type(len("abc")) is int and len("abc") == 3'


def test_new_course_validates_in_the_sandbox(
    sandbox_engine: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    courses = tmp_path / "courses"
    courses.mkdir()
    config = tmp_path / "learnhub.yaml"
    config.write_text(f"courses_dir: {courses}\n")
    env = {"LEARNHUB_CONFIG": str(config)}
    # The sandbox as the CLI builds it, with this session's container prefix and short limits.
    monkeypatch.setattr("grader.policy.sandbox_policy", lambda settings, course: short_policy())

    assert main(["courses", "new", COURSE, "--title", "Intro to Python"], env) == 0
    assert f"learnhub courses validate {COURSE} --run" in capsys.readouterr().out
    assert main(["courses", "new", COURSE], env) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["courses", "new", "Bad_ID"], env) == 2
    assert "'Bad_ID' is not a course id" in capsys.readouterr().err

    folder = courses / COURSE
    entry = load_course(folder)
    assert entry.course.title == "Intro to Python" and entry.course.pacing == "self-paced"
    source = folder / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    roles = [
        (c.metadata["nbgrader"].get("solution"), c.metadata["nbgrader"].get("points"))
        for c in nbformat.read(source, as_version=4).cells
        if c.cell_type == "code"
    ]
    assert roles == [(True, None), (False, 1), (False, 1)]  # solution, visible, hidden tests
    assert "### BEGIN HIDDEN TESTS" in source.read_text()

    assert main(["courses", "validate", COURSE, "--run"], env) == 0
    out = capsys.readouterr().out
    assert f"{COURSE}: 0 errors, 0 warnings (static and sandbox checks)" in out, out
    assert list(tmp_path.glob("learnhub-validate-*")) == []

    # An author adds a test cell the untouched release passes: an error naming that cell.
    shutil.copytree(folder / "source" / ASSIGNMENT, folder / "source" / "ps2")
    (folder / "source" / "ps2" / f"{ASSIGNMENT}.ipynb").rename(
        folder / "source" / "ps2" / "ps2.ipynb"
    )
    nb = nbformat.read(folder / "source" / "ps2" / "ps2.ipynb", as_version=4)
    free = nbformat.v4.new_code_cell(FREE_POINTS, metadata={"nbgrader": {
        "grade": True, "grade_id": "free", "locked": True, "points": 1,
        "schema_version": 3, "solution": False, "task": False,
    }})  # fmt: skip
    free.id = "free-cell"
    nb.cells.append(free)
    nbformat.write(nb, folder / "source" / "ps2" / "ps2.ipynb")
    raw = yaml.safe_load((folder / "course.yaml").read_text())
    raw["assignments"].append({"id": "ps2", "title": "PS 2", "due_after": "7d"})
    (folder / "course.yaml").write_text(yaml.safe_dump(raw))

    (finding,) = check_assignments(
        load_course(folder),
        ["ps2"],
        policy=short_policy(),
        workdir=tmp_path,
        submissions=(RELEASE,),
    )
    assert (finding.level, finding.check) == ("error", "release-scores"), str(finding)
    where = f"{COURSE}/ps2/ps2.ipynb cell free-cell (free): error: "
    assert str(finding).startswith(where), str(finding)
    assert "already scores 1/1 here" in finding.message
