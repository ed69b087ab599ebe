"""Grade exports through nbgrader's ExportPlugin seam (issue #13, item 7), on a real gradebook.

The same plugin classes run from LearnHub (:func:`grader.export.export_grades`, what the
dashboard, the grading job and `learnhub grader export --exporter` call) and from nbgrader's
own CLI (`nbgrader export --exporter grader.export.MoodleCsvExportPlugin`).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import pytest
from nbgrader.api import Gradebook
from traitlets.config import Config

from grader.export import EXPORTERS, export_grades
from grader.gradebook import ensure_gradebook
from grader.reports import EXPORT_COLUMNS
from hub.grading_jobs import EXPORT_FORMATS
from tests.harness import run_nbgrader

COURSE = "c1"


@pytest.fixture
def gradebook(tmp_path: Path) -> str:
    """Two assignments; ann handed in a1 (6 of 10, 1 point late penalty), "bob, jr" nothing."""
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    ensure_gradebook(url)
    with Gradebook(url, COURSE) as gb:
        gb.add_assignment("a1", duedate=datetime(2026, 1, 1))
        gb.add_assignment("a2", duedate=datetime(2026, 2, 1))
        gb.add_notebook("a1", "a1")
        gb.add_grade_cell("t1", "a1", "a1", max_score=4, cell_type="code")
        gb.add_grade_cell("t2", "a1", "a1", max_score=6, cell_type="code")
        gb.add_student("ann")
        gb.add_student("bob, jr")
        submission = gb.add_submission("a1", "ann", timestamp=datetime(2026, 1, 2, 3, 4, 5))
        gb.find_grade("t1", "a1", "a1", "ann").manual_score = 4
        gb.find_grade("t2", "a1", "a1", "ann").manual_score = 2
        submission.notebooks[0].late_submission_penalty = 1
        gb.db.commit()
    return url


def test_the_default_csv_has_one_row_per_submission_and_times_with_their_zone(
    gradebook: str,
) -> None:
    text = export_grades(Config(), gradebook, COURSE)
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == EXPORT_COLUMNS
    (row,) = list(reader)
    assert row["student"] == "ann" and row["assignment"] == "a1"
    assert float(row["score"]) == 6.0 and float(row["max_score"]) == 10.0
    assert float(row["late_penalty"]) == 1.0
    # nbgrader stores UTC without a zone; the export says which zone it is.
    assert row["submitted_at"] == "2026-01-02T03:04:05+00:00"


def test_the_moodle_csv_has_a_username_and_one_column_per_assignment(gradebook: str) -> None:
    text = export_grades(Config(), gradebook, COURSE, exporter="moodle")
    rows = list(csv.reader(io.StringIO(text)))
    # The score after the late penalty; nothing graded stays blank (Moodle leaves it).
    assert rows == [["username", "a1", "a2"], ["ann", "5", ""]]


def test_nbgraders_own_cli_runs_the_same_exporter(gradebook: str, tmp_path: Path) -> None:
    # One exporter only: each nbgrader CLI start costs seconds, and both share the seam.
    out = tmp_path / "moodle.csv"
    run_nbgrader(
        tmp_path, "export", "--exporter=grader.export.MoodleCsvExportPlugin",
        f"--to={out}", f"--db={gradebook}", f"--course={COURSE}",
    )  # fmt: skip
    assert out.read_text() == export_grades(Config(), gradebook, COURSE, exporter="moodle")


def test_before_any_grading_the_export_is_its_header_and_unknown_formats_are_refused() -> None:
    assert export_grades(Config(), None, COURSE) == ",".join(EXPORT_COLUMNS) + "\n"
    assert export_grades(Config(), None, COURSE, exporter="moodle") == "username\n"
    with pytest.raises(ValueError, match="unknown exporter 'canvas'"):
        export_grades(Config(), None, COURSE, exporter="canvas")
    assert tuple(EXPORTERS) == EXPORT_FORMATS
