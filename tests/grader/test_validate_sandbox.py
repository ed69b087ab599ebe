"""`learnhub courses validate --run`: the reference, the release and a cheater graded for real.

Real nbgrader, real sandbox. A course with a deliberately weak test cell
(tests/weak_course.py): the cheater, whose answers are objects that equal everything, scores on
the weak cell and only there; the reference solution loses the point of the cell that expects
a wrong value. The demo courses' test cells give the cheater nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.checks.dynamic import CHEATER, check_assignments
from hub.courses import Catalog, load_course
from tests.grader.conftest import REPO, short_policy
from tests.weak_course import ASSIGNMENT, NOTEBOOK, make_weak_course
from tests.weak_course import cell_ids as weak_cell_ids

pytestmark = pytest.mark.docker


def test_cheater_passes_the_weak_cell_and_only_it(sandbox_engine: None, tmp_path: Path) -> None:
    folder = make_weak_course(tmp_path / "courses")
    ids = weak_cell_ids(folder)
    findings = check_assignments(
        load_course(folder), [ASSIGNMENT], policy=short_policy(), workdir=tmp_path
    )
    found = {(f.check, f.grade_id): f for f in findings}
    assert set(found) == {("cheater-passes", "weak-tests"), ("reference-fails", "wrong-tests")}, [
        str(f) for f in findings
    ]
    cheat = found[("cheater-passes", "weak-tests")]
    assert (cheat.level, cheat.notebook, cheat.cell_id) == ("error", NOTEBOOK, ids["weak-tests"])
    assert "a cheater scores 1/1 here" in cheat.message
    wrong = found[("reference-fails", "wrong-tests")]
    assert wrong.level == "error" and wrong.cell_id == ids["wrong-tests"]
    assert "the reference solution scores 0/1 here (AssertionError)" in wrong.message
    # The untouched release scores nothing, so neither release check speaks up.
    assert list(tmp_path.glob("learnhub-validate-*")) == [], "throwaway course left behind"


def test_demo_courses_give_the_cheater_nothing(sandbox_engine: None, tmp_path: Path) -> None:
    # The reference (full marks) and the release (zero) of every demo assignment are graded by
    # tests/test_course_content.py; only the cheater is new here.
    for entry in Catalog.load(REPO / "courses"):
        findings = check_assignments(
            entry,
            [a.id for a in entry.course.assignments],
            policy=short_policy(),
            workdir=tmp_path,
            submissions=(CHEATER,),
        )
        assert findings == [], [str(f) for f in findings]
