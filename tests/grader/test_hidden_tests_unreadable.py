"""Hidden tests are not readable from inside the sandbox (real sandbox, real nbgrader).

The attack: the learner's first answer cell runs before any hidden test, so its outputs reach
the feedback by design. It reads everything it can find in the sandbox -- every file under
``/sandbox`` and ``/tmp``, and for every other process (the runner, the kernel's parent) its
``cmdline``, ``environ``, open files (``fd/*``) and memory (``mem`` through ``maps``) -- and
prints, base64-encoded, every stretch around a hidden-test marker it finds. The submission is
built from the *released* notebook, so it carries no hidden test itself: whatever it finds,
the grader put there.

The hidden tests' lines must appear neither in that cell's outputs in the autograded
notebook nor in the generated feedback HTML, decoded.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

import nbformat
import pytest

from grader.autograde import autograde_submissions
from tests.grader.conftest import (
    ASSIGNMENT,
    NOTEBOOK,
    SOURCE,
    VENV_BIN,
    make_course,
    short_policy,
)
from tests.harness import run_nbgrader

pytestmark = pytest.mark.docker

STUDENT = "snooper"
FIRST_ANSWER = "p1-vector2"
#: Runs at the top of the first answer cell. The marker is split so that the submission's
#: own source never matches it.
SNOOP = r"""
import base64 as _b64, os as _os
from IPython.display import display as _show

def _snoop():
    begin, end = b"BEGIN HIDDEN" + b" TESTS", b"END HIDDEN" + b" TESTS"
    found, readable, denied = set(), [], []

    def grab(data):
        start = 0
        while (at := data.find(begin, start)) >= 0:
            stop = data.find(end, at)
            chunk = data[max(at - 2000, 0) : (stop if stop >= 0 else at + 4000) + len(end)]
            found.add(chunk)
            # JSON (a notebook file, its text in memory) escapes newlines and quotes.
            found.add(chunk.replace(b"\\n", b"\n").replace(b'\\"', b'"'))
            start = at + 1

    def read(path, limit=64 << 20):
        try:
            fd = _os.open(path, _os.O_RDONLY | _os.O_NONBLOCK)  # never block on a pipe
        except OSError as exc:
            denied.append(f"{path}:{type(exc).__name__}")
            return
        try:
            data = _os.read(fd, limit)
            readable.append(path)
            grab(data)
        except OSError as exc:
            denied.append(f"{path}:{type(exc).__name__}")
        finally:
            _os.close(fd)

    for top in ("/sandbox", "/tmp"):
        for folder, _, names in _os.walk(top):
            for name in names:
                read(_os.path.join(folder, name))
    me = _os.getpid()
    for pid in [p for p in _os.listdir("/proc") if p.isdigit() and int(p) != me]:
        proc = f"/proc/{pid}"
        read(f"{proc}/cmdline")
        read(f"{proc}/environ")
        try:
            fds = _os.listdir(f"{proc}/fd")
        except OSError as exc:
            denied.append(f"{proc}/fd:{type(exc).__name__}")
            fds = []
        for fd in fds:
            read(f"{proc}/fd/{fd}")
        try:
            maps = open(f"{proc}/maps").read().splitlines()
            mem = open(f"{proc}/mem", "rb")
        except OSError as exc:
            denied.append(f"{proc}/mem:{type(exc).__name__}")
            continue
        with mem:
            for line in maps:
                span, perms = line.split()[:2]
                low, high = (int(x, 16) for x in span.split("-"))
                if "r" not in perms or high - low > 256 << 20:
                    continue
                try:
                    mem.seek(low)
                    grab(mem.read(high - low))
                except (OSError, OverflowError, ValueError):
                    continue
            readable.append(f"{proc}/mem")

    _show({"text/plain": f"SNOOP-READ {len(readable)}: " + " ".join(readable)}, raw=True)
    _show({"text/plain": f"SNOOP-DENIED {len(denied)}: " + " ".join(denied)}, raw=True)
    for chunk in sorted(found)[:60]:
        # One output each: nbgrader's LimitOutput trims long outputs.
        _show({"text/plain": "SNOOP-B64 " + _b64.b64encode(chunk[-5000:]).decode()}, raw=True)
    _show({"text/plain": f"SNOOP-DONE found={len(found)}"}, raw=True)

_snoop()
"""
BLOB = re.compile(r"SNOOP-B64 ([A-Za-z0-9+/=]+)")


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _hidden_lines() -> list[str]:
    """Every distinctive line between the hidden-test markers of the assignment's source."""
    lines: list[str] = []
    for cell in nbformat.read(SOURCE / NOTEBOOK, as_version=4).cells:
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                inside = "BEGIN" in line
            elif inside and len(line.strip()) >= 20:
                lines.append(line.strip())
    assert len(lines) >= 10, lines
    return lines


def _snooping_submission(release: Path) -> nbformat.NotebookNode:
    """The released notebook (no hidden tests) with the reference answers and the snooper."""
    nb = nbformat.read(release, as_version=4)
    assert "HIDDEN TESTS" not in nbformat.writes(nb)
    source = nbformat.read(SOURCE / NOTEBOOK, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            cell.source = _cell(source, meta["grade_id"]).source
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert answers[0].metadata.nbgrader.grade_id == FIRST_ANSWER
    answers[0].source = SNOOP + answers[0].source
    return nb


def _decoded(text: str) -> list[str]:
    decoded: list[str] = []
    for blob in BLOB.findall(text):
        try:
            decoded.append(base64.b64decode(blob).decode("utf-8", errors="replace"))
        except binascii.Error:
            continue
    return decoded


def _grade_with_feedback(root: Path, submission: nbformat.NotebookNode) -> tuple[str, str]:
    """Submit, autograde in the sandbox (full marks expected) and generate feedback.

    Returns the first answer cell's text outputs in the autograded notebook and the feedback
    HTML: the two places a leak would reach the learner.
    """
    dest = root / "submitted" / STUDENT / ASSIGNMENT / NOTEBOOK
    dest.parent.mkdir(parents=True)
    nbformat.write(submission, dest)
    (result,) = autograde_submissions(
        root, ASSIGNMENT, [STUDENT], policy=short_policy(), parallel=1
    )
    assert (result.score, result.outcome) == (10, "ok"), result
    run_nbgrader(root, "generate_feedback", ASSIGNMENT, "--force")
    graded = nbformat.read(root / "autograded" / STUDENT / ASSIGNMENT / NOTEBOOK, as_version=4)
    cell_outputs = "\n".join(
        str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", ""))
        for o in _cell(graded, FIRST_ANSWER).outputs
    )
    html = (root / "feedback" / STUDENT / ASSIGNMENT / NOTEBOOK).with_suffix(".html").read_text()
    return cell_outputs, html


def test_hidden_tests_are_not_readable_in_the_sandbox(sandbox_engine: None, tmp_path: Path) -> None:
    hidden = _hidden_lines()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
        root = make_course(tmp_path / "course")
        cell_outputs, html = _grade_with_feedback(
            root, _snooping_submission(root / "release" / ASSIGNMENT / NOTEBOOK)
        )
    # The snooper ran to the end and could read things (it is not a test that cannot fail).
    assert "SNOOP-DONE" in cell_outputs, cell_outputs[:2000]
    read = re.search(r"SNOOP-READ (\d+):(.*)", cell_outputs)
    assert read is not None and int(read.group(1)) > 0, cell_outputs[:2000]
    assert "/proc/1/cmdline" in read.group(2)
    assert "SNOOP-DONE" in html  # the cell ran before any hidden test: its outputs are kept
    for where, text in (("autograded notebook", cell_outputs), ("feedback", html)):
        leaked = [line for found in _decoded(text) for line in hidden if line in found]
        assert not leaked, f"hidden tests readable in the sandbox, shown in {where}: {leaked}"


#: The first answer cell shows a placeholder; the test cell's first call into the learner's
#: code (``Vector2.__init__``) replaces it, by display id, with the test's source encoded.
#: The placeholder's cell ran before any hidden test, so the feedback keeps its outputs.
REWRITE = r"""
import base64 as _b64
from IPython.display import display as _show, update_display as _update

_show({"text/plain": "REWRITE-PLACEHOLDER"}, raw=True, display_id="learnhub-rewrite")

def _rewrite():
    source = get_ipython().user_ns["In"][-1]
    if "HIDDEN" in source:
        text = "SNOOP-B64 " + _b64.b64encode(source.encode()).decode()
        _update({"text/plain": text}, raw=True, display_id="learnhub-rewrite")
"""


def test_a_later_cell_cannot_rewrite_an_earlier_cells_output(
    sandbox_engine: None, tmp_path: Path
) -> None:
    hidden = _hidden_lines()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
        root = make_course(tmp_path / "course")
        nb = _snooping_submission(root / "release" / ASSIGNMENT / NOTEBOOK)
        first = _cell(nb, FIRST_ANSWER)
        first.source = REWRITE + first.source.replace(SNOOP, "").replace(
            "def __init__(self, x, y):\n", "def __init__(self, x, y):\n        _rewrite()\n", 1
        )
        assert "_rewrite()" in first.source and "_snoop()" not in first.source
        cell_outputs, html = _grade_with_feedback(root, nb)
    # The placeholder is what the learner showed, and the feedback keeps it.
    assert "REWRITE-PLACEHOLDER" in cell_outputs and "REWRITE-PLACEHOLDER" in html
    for where, text in (("autograded notebook", cell_outputs), ("feedback", html)):
        leaked = [line for found in _decoded(text) for line in hidden if line in found]
        assert not leaked, f"a test cell rewrote an earlier output, shown in {where}: {leaked}"
