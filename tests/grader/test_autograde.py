"""Sandboxed autograde end to end: real nbgrader, real Docker, hostile submissions.

One temp course is graded twice, first in parallel and then serially; every submission
must get the same score both times, the expected score, and a visible sandbox reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from grader.autograde import (
    GradeResult,
    autograde_submissions,
    course_config,
    default_parallel,
    find_submitted_students,
)
from hub.autograde_runs import sandbox_seconds
from tests.grader.conftest import (
    ASSIGNMENT,
    COURSE_ID,
    NOTEBOOK,
    SOURCE,
    VENV_BIN,
    make_course,
    sandbox_containers,
    short_policy,
)

pytestmark = pytest.mark.docker

FAKE_SECRET = "sk_test_secret"
#: CPU seconds a cell may use. The two loop cases burn all of it on a core, in both gradings
#: (about 4 x 12 s of the module's time at 10 s). The reference's heaviest cell needs well
#: under 1 CPU second, and CPU time does not grow with host load; test_busy_host grades on a
#: saturated host with the same 3 s.
CELL_CPU_SECONDS = 3
SOLUTION_P4 = "p4-word-index"  # the last solution cell (2 points)
TEST_IDS = ("p1-tests", "p2-tests", "p3-tests", "p4-tests")


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _prefix_p4(code: str) -> Callable[[nbformat.NotebookNode], None]:
    """Put hostile code at the top of the part 4 solution cell of the reference solution."""

    def edit(nb: nbformat.NotebookNode) -> None:
        cell = _cell(nb, SOLUTION_P4)
        cell.source = code + "\n" + cell.source

    return edit


def _extra_cell_first(code: str) -> Callable[[nbformat.NotebookNode], None]:
    def edit(nb: nbformat.NotebookNode) -> None:
        nb.cells.insert(0, nbformat.v4.new_code_cell(code))

    return edit


def _blank_tests(nb: nbformat.NotebookNode) -> None:
    for grade_id in TEST_IDS:
        _cell(nb, grade_id).source = "pass  # tests? what tests?"


def _delete_tests(nb: nbformat.NotebookNode) -> None:
    nb.cells = [
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in TEST_IDS
    ]


def _fake_helpers(nb: nbformat.NotebookNode) -> None:
    # Defines what the tests call, returning whatever the visible asserts expect.
    _cell(nb, SOLUTION_P4).source = (
        "def word_index(text):\n"
        "    return {'the': [1, 2], 'cat': [1, 2], 'dog': [2], 'sat': [1, 2], 'on': [2]}\n"
    )


@dataclass(frozen=True)
class Case:
    base: str  # "source" (reference solution) or "release"
    edit: Callable[[nbformat.NotebookNode], None] | None
    score: float
    outcome: str
    reason: str


CASES: dict[str, Case] = {
    "reference": Case("source", None, 10, "ok", ""),
    "untouched": Case("release", None, 0, "ok", ""),
    "infinite-loop": Case("source", _prefix_p4("while True:\n    pass"), 8, "limit", "timeout"),
    "stubborn-loop": Case(
        "source",
        _prefix_p4("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"),
        8,
        "limit",
        "timeout",
    ),
    "fork-bomb": Case(
        "source", _prefix_p4("import os\nwhile True:\n    os.fork()"), 8, "limit", "pids"
    ),
    "memory-bomb": Case(
        "source", _prefix_p4("hog = [b'x' * 10**7 for _ in range(10**4)]"), 8, "limit", "memory"
    ),
    "kernel-killer": Case(
        "source",
        _prefix_p4("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
        8,
        "limit",
        "kernel-died",
    ),
    "network": Case(
        "source",
        _extra_cell_first(
            "import urllib.request\n"
            "try:\n"
            "    urllib.request.urlopen('http://1.1.1.1', timeout=3)\n"
            "    print('NETWORK-REACHABLE')\n"
            "except OSError as exc:\n"
            "    print('NETWORK-BLOCKED', exc)\n"
        ),
        10,
        "ok",
        "",
    ),
    "snoop": Case(
        "source",
        _extra_cell_first(
            "import os\n"
            "print('ENV', dict(os.environ))\n"
            "for path in ('/etc/shadow', '/proc/1/environ', '/work/main/pyproject.toml'):\n"
            "    try:\n"
            "        print('READ', path, open(path).read()[:200])\n"
            "    except OSError as exc:\n"
            "        print('DENIED', path, exc)\n"
        ),
        10,
        "ok",
        "",
    ),
    "blank-tests": Case("release", _blank_tests, 0, "ok", ""),
    "fake-helpers": Case("source", _fake_helpers, 8, "ok", ""),
    "swallow-errors": Case(
        "release",
        _extra_cell_first("get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)"),
        0,
        "ok",
        "",
    ),
    "deleted-tests": Case("source", _delete_tests, 10, "ok", ""),
    "deleted-tests-release": Case("release", _delete_tests, 0, "ok", ""),
}


@dataclass
class Graded:
    root: Path
    parallel: dict[str, GradeResult]
    serial: dict[str, GradeResult]

    def notebook(self, student: str) -> nbformat.NotebookNode:
        return nbformat.read(
            self.root / "autograded" / student / ASSIGNMENT / NOTEBOOK, as_version=4
        )


@pytest.fixture(scope="module")
def graded(sandbox_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graded]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
        # A secret in the grader's environment must never reach student code.
        mp.setenv("LEARNHUB_STRIPE_SECRET_KEY", FAKE_SECRET)
        root = make_course(tmp_path_factory.mktemp("grader") / "course")
        for student, case in CASES.items():
            src = (
                SOURCE / NOTEBOOK
                if case.base == "source"
                else root / "release" / ASSIGNMENT / NOTEBOOK
            )
            nb = nbformat.read(src, as_version=4)
            if case.edit is not None:
                case.edit(nb)
            dest = root / "submitted" / student / ASSIGNMENT / NOTEBOOK
            dest.parent.mkdir(parents=True)
            nbformat.write(nb, dest)
        policy = short_policy(cell_timeout=CELL_CPU_SECONDS)
        seen: list[str] = []
        config = course_config(root, course_id=COURSE_ID)
        parallel = autograde_submissions(
            root,
            ASSIGNMENT,
            None,
            policy=policy,
            config=config,
            parallel=2,
            progress=lambda r: seen.append(r.student),
        )
        assert sorted(seen) == sorted(CASES)
        serial = autograde_submissions(
            root, ASSIGNMENT, list(CASES), policy=policy, config=config, parallel=1
        )
        yield Graded(root, {r.student: r for r in parallel}, {r.student: r for r in serial})


def test_students_discovered(graded: Graded) -> None:
    assert find_submitted_students(graded.root, ASSIGNMENT) == sorted(CASES)
    assert set(graded.parallel) == set(CASES)


@pytest.mark.parametrize("student", list(CASES))
def test_score_outcome_and_reason(graded: Graded, student: str) -> None:
    case = CASES[student]
    for run in (graded.parallel, graded.serial):
        result = run[student]
        details = (result.outcome, result.reason, result.detail, result.notebooks)
        assert result.score == case.score, details
        assert result.max_score == 10
        assert (result.outcome, result.reason) == (case.outcome, case.reason), details
        # Timed for the operators' metrics (hub/autograde_runs.py): its sandboxes ran inside it.
        assert 0 <= sandbox_seconds(result) <= result.seconds, (result.seconds, details)
    # Parallel and serial grading agree exactly (same score, same reason).
    p, s = graded.parallel[student], graded.serial[student]
    assert (p.score, p.outcome, p.reason) == (s.score, s.outcome, s.reason)
    # The reason is visible to the instructor in the graded notebook.
    meta = graded.notebook(student).metadata["learnhub"]["sandbox"]
    assert (meta["outcome"], meta["reason"]) == (case.outcome, case.reason)


def test_gradebook_matches(graded: Graded) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{graded.root / 'gradebook.db'}", course_id=COURSE_ID) as gb:
        for student, case in CASES.items():
            assert gb.find_submission(ASSIGNMENT, student).score == case.score, student


def _text(nb: nbformat.NotebookNode) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def test_network_is_unreachable(graded: Graded) -> None:
    text = _text(graded.notebook("network"))
    assert "NETWORK-BLOCKED" in text and "NETWORK-REACHABLE" not in text


def test_no_grader_secrets_or_host_files(graded: Graded) -> None:
    text = _text(graded.notebook("snoop"))
    assert "ENV" in text
    assert FAKE_SECRET not in text and "LEARNHUB_STRIPE_SECRET_KEY" not in text
    assert "DENIED /etc/shadow" in text and "DENIED /proc/1/environ" in text
    assert "DENIED /work/main/pyproject.toml" in text
    for name in ("PATH", "HOME"):
        assert os.environ[name] not in text or name == "HOME"


def test_timeout_error_in_offending_cell(graded: Graded) -> None:
    nb = graded.notebook("infinite-loop")
    outputs = _cell(nb, SOLUTION_P4).outputs
    assert any(
        o.get("ename") == "Timeout" and f"cell exceeded {CELL_CPU_SECONDS} s" in o.get("evalue", "")
        for o in outputs
    )


def test_aborted_notebook_marks_remaining_cells(graded: Graded) -> None:
    nb = graded.notebook("kernel-killer")
    assert any(o.get("output_type") == "error" for o in _cell(nb, SOLUTION_P4).outputs)
    assert any(o.get("ename") == "NotExecuted" for o in _cell(nb, "p4-tests").outputs)


def test_deleted_tests_are_restored(graded: Graded) -> None:
    nb = graded.notebook("deleted-tests")
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert all(t in ids for t in TEST_IDS)


def test_no_container_left(graded: Graded) -> None:
    assert sandbox_containers() == []


def test_default_parallel_is_two_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert default_parallel() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: as if one core
    assert default_parallel() == 2
