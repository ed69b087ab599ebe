"""The grades export's columns and its CSV writer (no nbgrader: the service imports it).

:mod:`grader.export` (the nbgrader exporters) and :mod:`grader.reports` (the dashboards) both
use them; they live here so neither imports the other.
"""

from __future__ import annotations

import csv
import io
from typing import Any

#: Columns of the grades export, in order.
EXPORT_COLUMNS = [
    "course",
    "assignment",
    "student",
    "score",
    "max_score",
    "late_penalty",
    "seconds_late",
    "submitted_at",
    "needs_manual_grade",
]


def grades_csv(rows: list[dict[str, Any]]) -> str:
    """The grades export as CSV text."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()
