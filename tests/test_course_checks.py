"""`learnhub courses validate`, static part: test cells an "always equal" value would pass.

No Docker: the test cells are only read. The sandbox part is in
tests/grader/test_validate_sandbox.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.checks.cells import Cell, code_cells, read_notebook
from grader.checks.dynamic import cheater_notebook
from grader.checks.static import check_notebook
from grader.checks.validate import static_findings
from hub.cli import main
from hub.courses import Catalog, CourseEntry, load_course
from tests.weak_course import ASSIGNMENT, NOTEBOOK, make_weak_course
from tests.weak_course import cell_ids as weak_cell_ids

ROOT = Path(__file__).resolve().parent.parent

SOLUTION = """\
def f(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

class V:
    pass

LIMIT = 3
"""


def _scan(test: str) -> list[str]:
    """Messages of the static check for one test cell after the solution cell above."""
    cells = [
        Cell(0, "sol", "solution", SOLUTION, is_test=False, is_solution=True, points=0),
        Cell(1, "abc123", "tests", test, is_test=True, is_solution=False, points=1),
    ]
    return [f.message for f in check_notebook("c", "a", "n.ipynb", cells)]


@pytest.mark.parametrize(
    ("test", "advice"),
    [
        ("assert f(2) == 4", "`assert type(f(2)) is int`, then compare"),
        ("assert f(2) != 5", "`assert type(f(2)) is int`"),
        ("assert f(0.5) == 1.0", "(for floats: `math.isclose`)"),
        ("assert 4 in f([2])", "`assert type(f([2])) is <the type you expect>`"),
        ("assert f(2) < 5", "`assert type(f(2)) is <the type you expect>`"),
        ("assert f(2)", "Write `assert f(2) is True`"),
        ("assert not f(0)", "Write `assert f(0) is False`"),
        ("assert (f(2) == 4) is True", "only shows that the learner's `__eq__` returned True"),
        ("got = f(2)\nassert got == 4", "`assert type(got) is int`"),
        ("for i in range(3):\n    got = f(i)\n    assert got == 2 * i", "`assert type(got)"),
        ("assert [f(i) for i in range(2)] == [0, 2]", "`assert all(type(x) is <the type"),
        ("assert (f(1), f(2)) == (2, 4)", "for x in (f(1), f(2)))`"),
        ("assert abs(f(-2)) == 4", "`assert type(abs(f(-2))) is int`"),
        ("assert LIMIT == 3", "what `LIMIT` gives"),
        ("v = V()\nassert type(v) is V and v == V()", "The learner writes `V` and its `__eq__`"),
    ],
)
def test_weak_assertions_warn_with_what_to_write(test: str, advice: str) -> None:
    messages = _scan(test)
    assert len(messages) == 1, messages
    assert advice in messages[0], messages[0]


@pytest.mark.parametrize(
    "test",
    [
        "assert type(f(2)) is int\nassert f(2) == 4",
        "assert f(2) == 4\nassert type(f(3)) is int",  # anywhere in the cell: it fails whole
        "r = f(2)\nassert isinstance(r, int) and r == 4",
        "assert type(f(2)) == int and f(2) == 4",
        "assert type(f(2)) in (int, float) and f(2) == 4",
        "assert f(1) is None",
        "assert f(2) is True",
        "assert len(f([1])) == 2",
        "assert repr(f(2)) == '4'",
        "assert math.isclose(f(0.5), 1.0)",
        "assert sorted(f([2, 1])) == [1, 1, 2, 2]",
        "assert 2 * 2 == 4",
        "v = V()\nassert type(repr(v)) is str and v == V()",
        "got = [f(i) for i in range(2)]\nassert all(type(x) is int for x in got) and got == [0, 2]",
        "%time x = 1\nassert type(f(2)) is int and f(2) == 4",
    ],
)
def test_checked_or_exact_assertions_pass(test: str) -> None:
    assert _scan(test) == []


def test_unparsable_test_cell_is_an_error() -> None:
    cells = [Cell(1, "abc123", "tests", "assert f(", True, False, 1)]
    (finding,) = check_notebook("c", "a", "n.ipynb", cells)
    assert (finding.level, finding.check, finding.line) == ("error", "syntax", 1)


def test_weak_course_warns_where_and_why(tmp_path: Path) -> None:
    folder = make_weak_course(tmp_path)
    (finding,) = static_findings(load_course(folder))
    ids = weak_cell_ids(folder)
    assert (finding.level, finding.check) == ("warning", "weak-assert")
    assert (finding.course, finding.assignment, finding.notebook) == ("weak-tests", "ps1", NOTEBOOK)
    assert (finding.cell_id, finding.grade_id, finding.line) == (ids["weak-tests"], "weak-tests", 1)
    assert str(finding).startswith(
        f"weak-tests/ps1/{NOTEBOOK} cell {ids['weak-tests']} (weak-tests) line 1: warning: "
        "`double(2) == 4` passes for an object whose `__eq__`"
    )
    assert "(1 more like it in this cell)" in finding.message
    assert "`assert type(double(2)) is int`, then compare" in finding.message


@pytest.mark.parametrize("entry", list(Catalog.load(ROOT / "courses")), ids=lambda e: e.course.id)
def test_demo_courses_have_no_weak_test_cells(entry: CourseEntry) -> None:
    assert static_findings(entry) == []


def test_cheater_binds_every_solution_name(tmp_path: Path) -> None:
    nb = read_notebook(make_weak_course(tmp_path) / "source" / ASSIGNMENT / NOTEBOOK)
    names = {"double": ["double", "V", "LIMIT", "A", "B"]}
    assert [c.grade_id for c in code_cells(nb) if c.is_solution] == ["double"]
    cheat = cheater_notebook(nb, names)
    (cell,) = [c for c in cheat.cells if c.metadata.get("nbgrader", {}).get("solution")]
    namespace: dict[str, object] = {}
    exec(cell.source, namespace)  # our own cheater, not learner code
    double = namespace["double"]
    assert callable(double)
    result = double(2)
    assert result == 4 and result == 5 and not (result != 4) and result < 0 and result > 0
    assert type(result) is not int and not isinstance(result, int)
    assert all(name in namespace for name in ("V", "LIMIT", "A", "B"))


def test_cli_validate_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    courses = tmp_path / "courses"
    make_weak_course(courses)
    config = tmp_path / "learnhub.yaml"
    config.write_text(f"courses_dir: {courses}\n")
    env = {"LEARNHUB_CONFIG": str(config)}

    assert main(["courses", "validate"], env) == 0  # warnings only
    out = capsys.readouterr().out
    assert "warning: `double(2) == 4`" in out and "[weak-assert]" in out
    assert "weak-tests: 0 errors, 1 warnings (static checks)" in out
    assert "add --run" in out

    assert main(["courses", "validate", "--strict", "weak-tests"], env) == 1
    assert main(["courses", "validate", "no-such-course"], env) == 2
    assert "no course 'no-such-course'" in capsys.readouterr().err


def test_named_courses_validate_while_another_is_broken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    courses = tmp_path / "courses"
    make_weak_course(courses)
    (courses / "half-written").mkdir()
    (courses / "half-written" / "course.yaml").write_text("id: half-written\ntitle: [\n")
    config = tmp_path / "learnhub.yaml"
    config.write_text(f"courses_dir: {courses}\n")
    env = {"LEARNHUB_CONFIG": str(config)}

    assert main(["courses", "validate", "weak-tests"], env) == 0
    assert main(["courses", "validate"], env) == 2
    assert "half-written/course.yaml: not valid YAML" in capsys.readouterr().err
