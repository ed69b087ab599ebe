"""The same grade on a busy host (real nbgrader, real sandbox, a saturated machine).

While the sandboxes run, CPU burners (one more than twice the cores, each bounded in time)
keep every core busy. Limits count the kernel's CPU time, so the reference solution keeps
full marks although its heaviest test cell takes several of its cell limits in wall-clock
time, and a memory bomb is still recorded as a memory limit, not as a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import nbformat
import pytest

from grader.autograde import GradeResult, autograde_submissions
from tests.grader.conftest import REPO, VENV_BIN, make_course, short_policy

pytestmark = pytest.mark.docker

SOURCE = REPO / "courses" / "algorithms-in-python" / "source" / "ps1-search-sort"
ASSIGNMENT = SOURCE.name
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
#: Its heaviest test cell (p2-tests) needs under 1 CPU second here; on a saturated host
#: that is several seconds of wall-clock time.
CELL_CPU_SECONDS = 3
#: The wall-clock backstop (for cells that wait) must not be what ends a busy cell.
WALL_CLOCK_FACTOR = 40.0
#: Burners end by themselves (and are killed when the test ends).
BURN_SECONDS = 900
BURNER = (
    "import time\n"
    f"end = time.monotonic() + {BURN_SECONDS}\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


def _memory_bomb(nb: nbformat.NotebookNode) -> None:
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "p4-top-k")
    cell.source = "hog = [b'x' * 10**7 for _ in range(10**4)]\n" + cell.source


SUBMISSIONS: dict[str, Callable[[nbformat.NotebookNode], None] | None] = {
    "reference": None,
    "memory-bomb": _memory_bomb,
}


@pytest.fixture(scope="module")
def graded_on_busy_host(
    sandbox_engine: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, GradeResult]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
        root = make_course(tmp_path_factory.mktemp("busy") / "course", SOURCE)
        for student, edit in SUBMISSIONS.items():
            nb = nbformat.read(SOURCE / NOTEBOOK, as_version=4)
            if edit is not None:
                edit(nb)
            dest = root / "submitted" / student / ASSIGNMENT / NOTEBOOK
            dest.parent.mkdir(parents=True)
            nbformat.write(nb, dest)
        policy = short_policy(
            cell_timeout=CELL_CPU_SECONDS,
            notebook_timeout=60.0,
            wall_clock_factor=WALL_CLOCK_FACTOR,
        )
        burners = [
            subprocess.Popen([sys.executable, "-c", BURNER])
            for _ in range(2 * (os.cpu_count() or 1) + 1)
        ]
        try:
            results = autograde_submissions(
                root, ASSIGNMENT, list(SUBMISSIONS), policy=policy, parallel=2
            )
            # The host was saturated for the whole grade.
            assert all(b.poll() is None for b in burners), "a burner ended early"
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
    yield {r.student: r for r in results}


def test_reference_keeps_full_marks(graded_on_busy_host: dict[str, GradeResult]) -> None:
    result = graded_on_busy_host["reference"]
    assert (result.score, result.max_score) == (10, 10), result
    assert (result.outcome, result.reason) == ("ok", ""), result
    # The limits were CPU time: the sandbox reports what the kernel used.
    (meta,) = result.notebooks.values()
    assert meta["cpu_seconds"] is not None and meta["cpu_seconds"] > 0


def test_memory_bomb_is_recorded_as_memory(graded_on_busy_host: dict[str, GradeResult]) -> None:
    result = graded_on_busy_host["memory-bomb"]
    assert (result.outcome, result.reason) == ("limit", "memory"), result
    assert result.score == 7, result  # parts 1 to 3; part 4's cell ran out of memory
