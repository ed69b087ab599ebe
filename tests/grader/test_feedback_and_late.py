"""Feedback never shows hidden tests; late penalties follow course.yaml."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from grader.feedback import HIDDEN_ERROR, StripHiddenTests
from grader.late import PercentPerDayLate
from grader.reports import EXPORT_COLUMNS, grades_csv

TEST_CELL = """assert add(1, 2) == 3
### BEGIN HIDDEN TESTS
assert add(-7, 7) == 0, "negative numbers"
assert add(10**6, 1) == 1000001
### END HIDDEN TESTS
"""


def notebook() -> nbformat.NotebookNode:
    failing = new_code_cell(TEST_CELL)
    failing.outputs = [
        new_output(
            "error",
            ename="AssertionError",
            evalue="negative numbers",
            traceback=['----> 3 assert add(-7, 7) == 0, "negative numbers"', "AssertionError"],
        )
    ]
    snooping = new_code_cell("print(In[-1])")
    snooping.outputs = [
        new_output("stream", name="stdout", text="x = 1\nassert add(10**6, 1) == 1000001\n")
    ]
    return new_notebook(cells=[failing, snooping])


def test_hidden_tests_removed_from_source_traceback_and_outputs() -> None:
    nb, _ = StripHiddenTests().preprocess(notebook(), {})
    text = nbformat.writes(nb)
    assert "add(-7, 7)" not in text
    assert "10**6" not in text
    assert "BEGIN HIDDEN TESTS" not in text
    assert "hidden tests are not shown" in nb.cells[0].source
    assert "assert add(1, 2) == 3" in nb.cells[0].source  # visible tests stay
    error = nb.cells[0].outputs[0]
    assert error["evalue"] == HIDDEN_ERROR
    assert error["traceback"] == [f"AssertionError: {HIDDEN_ERROR}"]
    # It ran after hidden tests: what it printed may be them, encoded.
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None


def test_cells_before_hidden_tests_keep_their_outputs() -> None:
    visible = new_code_cell("assert add(1, 1) == 3")
    visible.outputs = [
        new_output("stream", name="stdout", text="adding 1 and 1\n"),
        new_output(
            "error",
            ename="AssertionError",
            evalue="",
            traceback=["----> 1 assert add(1, 1) == 3", "AssertionError"],
        ),
    ]
    picture = new_code_cell("plot()")
    picture.outputs = [new_output("display_data", data={"image/png": "iVBORw0KGgo="})]
    hidden = new_code_cell(TEST_CELL)
    hidden.outputs = [new_output("stream", name="stdout", text="anything\n")]
    nb, _ = StripHiddenTests().preprocess(new_notebook(cells=[visible, picture, hidden]), {})
    assert nb.cells[0].outputs[0]["text"] == "adding 1 and 1\n"
    assert nb.cells[0].outputs[1]["traceback"][0] == "----> 1 assert add(1, 1) == 3"
    assert nb.cells[1].outputs[0]["data"] == {"image/png": "iVBORw0KGgo="}
    assert nb.cells[2].outputs == []


def test_error_types_the_learner_named_are_not_shown() -> None:
    cell = new_code_cell(TEST_CELL)
    cell.outputs = [
        new_output("error", ename="YXNzZXJ0IGFkZCgtNyw", evalue="x", traceback=["secret"])
    ]
    nb, _ = StripHiddenTests().preprocess(new_notebook(cells=[cell]), {})
    assert nb.cells[0].outputs == [
        new_output(
            "error",
            ename="Exception",
            evalue=HIDDEN_ERROR,
            traceback=[f"Exception: {HIDDEN_ERROR}"],
        )
    ]


def test_coloured_traceback_through_a_hidden_test_is_replaced() -> None:
    cell = new_code_cell(TEST_CELL)
    cell.outputs = [
        new_output(
            "error",
            ename="NotImplementedError",
            evalue="",
            traceback=[
                "\x1b[0;32m      2\x1b[0m \x1b[38;5;66m### BEGIN HIDDEN TESTS\x1b[39;00m",
                "\x1b[0;32m----> 3\x1b[0m \x1b[38;5;28;01massert\x1b[39;00m "
                "add(\x1b[38;5;241m-7\x1b[39m, 7)",
                "NotImplementedError",
            ],
        )
    ]
    nb, _ = StripHiddenTests().preprocess(new_notebook(cells=[cell]), {})
    assert nb.cells[0].outputs[0]["traceback"] == [f"NotImplementedError: {HIDDEN_ERROR}"]


def test_percent_per_day_late_penalty() -> None:
    late = PercentPerDayLate(percent_per_day=10, max_percent=50)
    assert late.late_submission_penalty("ada", 10.0, 0) == 0.0
    assert late.late_submission_penalty("ada", 10.0, 60) == 1.0  # a started day
    assert late.late_submission_penalty("ada", 10.0, 86400 * 2 + 1) == 3.0
    assert late.late_submission_penalty("ada", 10.0, 86400 * 30) == 5.0  # capped at 50 %
    assert late.late_submission_penalty("ada", 0.0, 86400) == 0.0


def test_grades_csv_columns() -> None:
    row = dict.fromkeys(EXPORT_COLUMNS, "")
    row.update(course="c", assignment="a", student="ada", score=9.5, max_score=10)
    text = grades_csv([row])
    assert text.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    assert text.splitlines()[1].startswith("c,a,ada,9.5,10,")
