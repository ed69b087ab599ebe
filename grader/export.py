"""Grade exports as nbgrader ``ExportPlugin`` classes (``nbgrader export --exporter``).

Every export of LearnHub goes through nbgrader's own export seam: the dashboard's download,
the grading worker's export job and ``learnhub grader export --exporter NAME`` instantiate one
of :data:`EXPORTERS` as nbgrader's ``ExportApp`` does (``plugin_class(parent=...)``, ``to``,
``assignment``) and call its ``export(gradebook)``. The same classes work with nbgrader's CLI:
``nbgrader export --exporter grader.export.MoodleCsvExportPlugin --to grades.csv``.

- ``csv`` (:class:`GradesCsvExportPlugin`, the default): one row per graded submission, the
  columns of :data:`grader.grades_table.EXPORT_COLUMNS`, ``submitted_at`` in ISO 8601 with its time
  zone (nbgrader's own ``CsvExportPlugin`` writes nbgrader's zone-less UTC and does not quote
  commas).
- ``moodle`` (:class:`MoodleCsvExportPlugin`): one row per learner, ``username`` then one
  column per assignment with the score after late penalties. Moodle's "Import grades > CSV
  file" maps any identifier column (here ``username``) to its users and each other column to
  a grade item, new or existing, so the file imports without LMS-internal ids. Canvas's
  gradebook import was not chosen: it matches learners by Canvas's own student ids, which
  LearnHub does not know.
"""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import UTC
from pathlib import Path
from typing import Any

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin
from traitlets.config import Config

from grader.gradebook import ensure_gradebook
from grader.grades_table import EXPORT_COLUMNS, grades_csv
from hub.grading_jobs import EXPORT_FORMATS

#: The exporter when none is asked for.
DEFAULT_EXPORTER = "csv"


def gradebook_rows(gb: Gradebook, course_id: str, assignments: list[str]) -> list[dict[str, Any]]:
    """One row per graded submission of ``assignments`` (in that order), by learner."""
    rows: list[dict[str, Any]] = []
    for name in assignments:
        try:
            submissions = gb.find_assignment(name).submissions
        except MissingEntry:
            continue
        for sub in sorted(submissions, key=lambda s: s.student.id):
            row = {
                "course": course_id,
                "assignment": name,
                "student": sub.student.id,
                "score": round(float(sub.score), 4),
                "max_score": round(float(sub.max_score), 4),
                "late_penalty": round(float(sub.late_submission_penalty or 0), 4),
                "seconds_late": round(float(sub.total_seconds_late or 0)),
                # nbgrader keeps times in UTC without a zone (utils.parse_utc).
                "submitted_at": (
                    sub.timestamp.replace(tzinfo=UTC).isoformat() if sub.timestamp else ""
                ),
                "needs_manual_grade": bool(sub.needs_manual_grade),
            }
            assert list(row) == EXPORT_COLUMNS
            rows.append(row)
    return rows


class LearnHubExportPlugin(ExportPlugin):  # type: ignore[misc]
    """Base of LearnHub's exporters: which assignments, and writing ``to`` (``grades.csv``)."""

    def chosen_assignments(self, gradebook: Gradebook) -> list[str]:
        """The ``assignment`` list when given, else every assignment of the gradebook."""
        if self.assignment:
            return [str(name) for name in self.assignment]
        return [a.name for a in gradebook.assignments]

    def render(self, gradebook: Gradebook) -> str:
        """The export's text."""
        raise NotImplementedError

    def export(self, gradebook: Gradebook) -> None:
        """Write :meth:`render` to ``to`` (``grades.csv`` when unset), as nbgrader's does."""
        dest = Path(self.to or "grades.csv")
        self.log.info("Exporting grades to %s", dest)
        dest.write_text(self.render(gradebook), encoding="utf-8")

    def _rows(self, gradebook: Gradebook) -> list[dict[str, Any]]:
        rows = gradebook_rows(gradebook, gradebook.course_id, self.chosen_assignments(gradebook))
        if self.student:
            wanted = {str(s) for s in self.student}
            rows = [r for r in rows if r["student"] in wanted]
        return rows


class GradesCsvExportPlugin(LearnHubExportPlugin):
    """LearnHub's CSV: one row per graded submission, times with their zone."""

    def render(self, gradebook: Gradebook) -> str:
        """:func:`grader.grades_table.grades_csv` of the gradebook's rows."""
        return grades_csv(self._rows(gradebook))


class MoodleCsvExportPlugin(LearnHubExportPlugin):
    """Moodle's grade import CSV: ``username`` and one score column per assignment."""

    def render(self, gradebook: Gradebook) -> str:
        """One row per learner; a blank cell where nothing was graded (Moodle leaves it)."""
        assignments = self.chosen_assignments(gradebook)
        scores: dict[str, dict[str, float]] = {}
        for row in self._rows(gradebook):
            net = max(0.0, float(row["score"]) - float(row["late_penalty"]))
            scores.setdefault(row["student"], {})[row["assignment"]] = round(net, 4)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["username", *assignments])
        for learner in sorted(scores):
            writer.writerow([learner, *(_number(scores[learner].get(a)) for a in assignments)])
        return out.getvalue()


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


EXPORTERS: dict[str, type[LearnHubExportPlugin]] = {
    "csv": GradesCsvExportPlugin,
    "moodle": MoodleCsvExportPlugin,
}
assert tuple(EXPORTERS) == EXPORT_FORMATS, "the job allow-list names every exporter"


def export_grades(
    config: Config,
    gradebook_url: str | None,
    course_id: str,
    *,
    exporter: str = DEFAULT_EXPORTER,
    assignments: list[str] | None = None,
) -> str:
    """Run the exporter ``exporter`` on the gradebook as ``nbgrader export`` would; its text.

    ``config`` is the course's nbgrader configuration; the plugin writes into a private
    temporary folder, which is read back and removed. Without a gradebook yet (``None``) the
    export is that of an empty one: its header only.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    with tempfile.TemporaryDirectory(prefix="learnhub-export-") as folder:
        dest = Path(folder) / "grades.csv"
        if gradebook_url is None:
            gradebook_url = f"sqlite:///{Path(folder) / 'empty.db'}"
            ensure_gradebook(gradebook_url)
        plugin = EXPORTERS[exporter](config=config)
        plugin.to = str(dest)
        plugin.assignment = list(assignments or [])
        with Gradebook(gradebook_url, course_id) as gb:
            plugin.export(gb)
        return dest.read_text(encoding="utf-8")
