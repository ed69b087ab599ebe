"""Hidden tests cannot be encoded out through feedback (real sandbox, real nbgrader feedback).

The attack: the learner's solution reads the hidden test's source while the restored test
cell runs (IPython's ``In`` history holds it) and prints it base64-encoded, spaced out and
as an ``image/png`` output; a later cell prints what it stashed. A line filter sees none of
it. Feedback for a cell with hidden tests, and for every cell that runs after one, may
show pass/fail and the error type only.
"""

from __future__ import annotations

import base64
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

STUDENT = "leaker"
VISIBLE = "VISIBLE-OUTPUT-BEFORE-HIDDEN-TESTS"
LEAK = (
    '''
import base64 as _b64
from IPython.display import display as _display

_stash = []


def _leak():
    """Called by the restored test cell: its source, hidden tests included, is In[-1]."""
    source = get_ipython().user_ns["In"][-1]
    if "HIDDEN" not in source or _stash:
        return
    _stash.append(source)
    print("LEAK" + "-B64", _b64.b64encode(source.encode()).decode())
    print("LEAK" + "-SPACED", " ".join(source))
    _display({"image/png": _b64.b64encode(source[::-1].encode()).decode()}, raw=True)


print("'''
    + VISIBLE
    + """")
"""
)
STASH = """
print("LEAK" + "-STASHED", _b64.b85encode(_stash[0].encode()).decode() if _stash else "nothing")
"""


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _leaking_submission() -> nbformat.NotebookNode:
    nb = nbformat.read(SOURCE / NOTEBOOK, as_version=4)
    p1 = _cell(nb, "p1-vector2")
    # Vector2.__init__ is the first thing the part 1 tests call.
    p1.source = LEAK + p1.source.replace(
        "def __init__(self, x, y):\n", "def __init__(self, x, y):\n        _leak()\n", 1
    )
    assert "_leak()" in p1.source
    p2 = _cell(nb, "p2-playlist")
    p2.source = STASH + p2.source
    return nb


def _feedback_config(root: Path) -> None:
    # What grader/course.py generates for a course's feedback.
    with (root / "nbgrader_config.py").open("a") as fh:
        fh.write(
            "c.GenerateFeedback.preprocessors = [\n"
            "    'nbgrader.preprocessors.GetGrades',\n"
            "    'grader.feedback.StripHiddenTests',\n"
            "    'nbconvert.preprocessors.CSSHTMLHeaderPreprocessor',\n"
            "]\n"
        )


def test_encoded_hidden_tests_never_reach_feedback(sandbox_engine: None, tmp_path: Path) -> None:
    hidden_source = _cell(nbformat.read(SOURCE / NOTEBOOK, as_version=4), "p1-tests").source
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
        root = make_course(tmp_path / "course")
        _feedback_config(root)
        dest = root / "submitted" / STUDENT / ASSIGNMENT / NOTEBOOK
        dest.parent.mkdir(parents=True)
        nbformat.write(_leaking_submission(), dest)
        (result,) = autograde_submissions(
            root, ASSIGNMENT, [STUDENT], policy=short_policy(), parallel=1
        )
        assert (result.score, result.outcome) == (10, "ok"), result

        # The attack worked inside the sandbox: the graded notebook carries the payloads.
        graded = (root / "autograded" / STUDENT / ASSIGNMENT / NOTEBOOK).read_text()
        for marker in ("LEAK-B64", "LEAK-SPACED", "LEAK-STASHED", "image/png"):
            assert marker in graded, marker

        run_nbgrader(root, "generate_feedback", ASSIGNMENT, "--force")
    html = (root / "feedback" / STUDENT / ASSIGNMENT / NOTEBOOK).with_suffix(".html").read_text()

    assert base64.b64encode(hidden_source.encode()).decode() not in html  # stdout, base64
    assert base64.b64encode(hidden_source[::-1].encode()).decode() not in html  # image/png
    assert base64.b85encode(hidden_source.encode()).decode() not in html  # stashed, later cell
    hidden_line = next(line for line in hidden_source.splitlines() if "NotImplemented" in line)
    assert " ".join(hidden_line) not in html  # spaced out
    assert "data:image" not in html
    for marker in ("LEAK-B64", "LEAK-SPACED", "LEAK-STASHED"):
        assert marker not in html, marker
    # What the learner still gets: outputs of cells that ran before any hidden test, and
    # each test cell's score.
    assert VISIBLE in html
    assert len(re.findall(r"Score: 3\.0 / 3\.0", html)) >= 2, "per-cell scores missing"
