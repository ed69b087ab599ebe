"""Feedback that leaks nothing: hidden tests never reach a learner.

nbgrader's feedback shows each graded cell as it was run, so hidden test code appears in the
source of restored test cells, in the traceback of a failing hidden assert, and in anything the
student's own code printed (it can read IPython's input history) — nbgrader #917.
:class:`StripHiddenTests` runs in nbgrader's `GenerateFeedback` pipeline, before the HTML export:
it removes hidden regions from every cell's source, and from every output it removes each line
that contains a line of hidden test code; an error raised inside a hidden region keeps only its
exception type and a neutral message.
"""

from __future__ import annotations

import re
from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

#: Shown where hidden tests were.
HIDDEN_NOTE = "# (hidden tests are not shown)"
#: Replaces the message of an error raised by a hidden test.
HIDDEN_ERROR = "a hidden test failed"
#: Terminal colour codes: IPython colours tracebacks, and they split code into pieces.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
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
        """Strip every cell; hidden lines from any cell are scrubbed from all outputs."""
        hidden_lines: set[str] = set()
        hidden_cells: set[int] = set()
        for index, cell in enumerate(nb.cells):
            source, hidden = self._split(cell.source)
            if hidden or source != cell.source:
                hidden_cells.add(index)
            cell.source = source
            hidden_lines.update(hidden)
        for index, cell in enumerate(nb.cells):
            for output in cell.get("outputs", []):
                self._scrub(output, hidden_lines, in_hidden_cell=index in hidden_cells)
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

    def _scrub(self, output: NotebookNode, hidden_lines: set[str], *, in_hidden_cell: bool) -> None:
        if output.get("output_type") == "error":
            traceback = "\n".join(output.get("traceback", []))
            if in_hidden_cell and self._reveals(traceback, hidden_lines):
                # The failing line is hidden test code: say which kind of error, nothing more.
                output["evalue"] = HIDDEN_ERROR
                output["traceback"] = [f"{output.get('ename', 'Error')}: {HIDDEN_ERROR}"]
                return
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
