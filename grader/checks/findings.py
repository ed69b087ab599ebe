"""What a check found, where, and how bad it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: ``error``: learners would get a broken or cheatable assignment; ``warning``: a test that a
#: cheater may pass (the dynamic check is the proof), failing only with ``--strict``.
Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem of one assignment, as precisely located as the check can."""

    level: Level
    #: A short key for the kind of problem: ``weak-assert``, ``syntax``, ``reference-fails``,
    #: ``release-full-marks``, ``release-scores``, ``cheater-passes``, ``sandbox``.
    check: str
    course: str
    assignment: str
    message: str
    notebook: str = ""
    #: nbformat's cell id and nbgrader's grade id of the cell, when the finding is about one.
    cell_id: str = ""
    grade_id: str = ""
    #: Line in the cell's source (1-based), when the finding is about one.
    line: int | None = None

    def location(self) -> str:
        """``course/assignment/notebook.ipynb: cell ID (grade-id) line N``, as far as known."""
        where = f"{self.course}/{self.assignment}"
        if self.notebook:
            where += f"/{self.notebook}"
        parts = [where]
        if self.cell_id or self.grade_id:
            cell = f"cell {self.cell_id or '?'}"
            if self.grade_id:
                cell += f" ({self.grade_id})"
            parts.append(cell)
        if self.line is not None:
            parts.append(f"line {self.line}")
        return " ".join(parts)

    def __str__(self) -> str:
        return f"{self.location()}: {self.level}: {self.message} [{self.check}]"
