"""Feedback that leaks nothing: hidden tests never reach a learner.

nbgrader's feedback shows each graded cell as it was run, so hidden test code appears in the
source of restored test cells, in the traceback of a failing hidden assert, and in anything the
student's own code printed: while a restored test cell runs, the learner's code can read its
source (IPython's ``In`` history, the calling frame) and print it encoded in any way, base64,
spaced out or as an image (nbgrader #917). No filter on output text can catch that.

:class:`StripHiddenTests` runs in nbgrader's `GenerateFeedback` pipeline, before the HTML
export. It removes hidden regions from every cell's source. A cell with hidden tests, and every
code cell that runs after one (the learner's code may have kept what it saw), keeps no output
at all except, when it failed, one error naming a built-in exception type with a neutral
message: pass/fail (the cell's score) and the error type. Cells that ran before any hidden
test keep their outputs, minus any line that contains hidden test code.
"""

from __future__ import annotations

import builtins
import re
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

#: Shown where hidden tests were.
HIDDEN_NOTE = "# (hidden tests are not shown)"
#: Replaces the message of an error raised by a hidden test.
HIDDEN_ERROR = "a hidden test failed"
#: Replaces the message of an error in a cell that ran after hidden tests.
AFTER_HIDDEN_ERROR = "details are not shown once hidden tests have run"
#: Terminal colour codes: IPython colours tracebacks, and they split code into pieces.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Error types a feedback may name: built-in exceptions and the sandbox's own. The type of a
#: raised exception is the learner's to choose (``type("<encoded secret>", (Exception,), {})``).
SHOWN_ERRORS = frozenset(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
) | {"Timeout", "MemoryLimit", "KernelDied", "NotExecuted", "SandboxAborted", "TestsNotRun"}
#: Shorter lines are too common (`pass`, `else:`) to say anything about a hidden test.
MIN_HIDDEN_LINE = 6


class StripHiddenTests(NbGraderPreprocessor):  # type: ignore[misc]
    """Remove hidden test code from sources and outputs before feedback is rendered."""

    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS", help="Start of a hidden region.").tag(
        config=True
    )
    end_test_delimeter = Unicode("END HIDDEN TESTS", help="End of a hidden region.").tag(
        config=True
    )

    def _split(self, source: str) -> tuple[str, list[str]]:
        """The source without hidden regions, and the hidden lines it had."""
        kept: list[str] = []
        hidden: list[str] = []
        inside = False
        for line in source.splitlines():
            if self.begin_test_delimeter in line:
                inside = True
                kept.append(line[: len(line) - len(line.lstrip())] + HIDDEN_NOTE)
                continue
            if self.end_test_delimeter in line:
                inside = False
                continue
            (hidden if inside else kept).append(line)
        return "\n".join(kept), [h.strip() for h in hidden if len(h.strip()) >= MIN_HIDDEN_LINE]

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[Any, Any]:
        """Strip every cell; cells from the first one with hidden tests on lose their outputs."""
        hidden_lines: set[str] = set()
        hidden_cells: set[int] = set()
        first_hidden: int | None = None
        for index, cell in enumerate(nb.cells):
            source, hidden = self._split(cell.source)
            if cell.cell_type == "code" and source != cell.source:
                hidden_cells.add(index)
                first_hidden = index if first_hidden is None else first_hidden
            cell.source = source
            hidden_lines.update(hidden)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if first_hidden is not None and index >= first_hidden:
                _reduce_to_error_type(cell, index in hidden_cells)
            else:
                for output in cell.get("outputs", []):
                    self._scrub(output, hidden_lines)
        return nb, resources

    def _reveals(self, text: str, hidden_lines: set[str]) -> bool:
        plain = ANSI.sub("", text)
        return (
            self.begin_test_delimeter in plain
            or self.end_test_delimeter in plain
            or any(h in plain for h in hidden_lines)
        )

    def _scrub_text(self, text: str, hidden_lines: set[str]) -> str:
        return "\n".join(line for line in text.split("\n") if not self._reveals(line, hidden_lines))

    def _scrub(self, output: NotebookNode, hidden_lines: set[str]) -> None:
        if output.get("output_type") == "error":
            output["evalue"] = self._scrub_text(str(output.get("evalue", "")), hidden_lines)
            output["traceback"] = [
                self._scrub_text(line, hidden_lines) for line in output.get("traceback", [])
            ]
            return
        if "text" in output:
            output["text"] = self._scrub_text(str(output["text"]), hidden_lines)
        data = output.get("data")
        if isinstance(data, dict):
            for mime, value in list(data.items()):
                if isinstance(value, str) and mime.startswith("text/"):
                    data[mime] = self._scrub_text(value, hidden_lines)


def _reduce_to_error_type(cell: NotebookNode, has_hidden_tests: bool) -> None:
    """Keep only whether the cell failed and with which (built-in) error type.

    Everything else in its outputs (text, rich data, tracebacks, messages, even the
    execution count) may carry what the learner's code saw of a hidden test.
    """
    enames = [o.get("ename") for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    cell.execution_count = None
    if not enames:
        cell.outputs = []
        return
    ename = str(enames[0]) if enames[0] in SHOWN_ERRORS else "Exception"
    message = HIDDEN_ERROR if has_hidden_tests else AFTER_HIDDEN_ERROR
    cell.outputs = [
        new_output(  # type: ignore[no-untyped-call]
            "error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"]
        )
    ]
