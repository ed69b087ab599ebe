"""Grade data for dashboards and the grades API, read from a course's nbgrader gradebook.

nbgrader (and with it nbconvert) is imported only when a gradebook is read: the LearnHub
service imports this module at start, and most of its work (catalog, checkout, webhook) never
needs nbgrader, which was about 40 MiB of the service's memory and a second of its start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.grades_table import EXPORT_COLUMNS, grades_csv  # noqa: F401 (used by importers)
from hub.courses import CourseEntry
from hub.settings import Settings

#: Score distribution buckets, in percent of the maximum.
BUCKETS = ["0-19", "20-39", "40-59", "60-79", "80-100"]


@dataclass
class CourseGrades:
    """Everything the instructor dashboard shows about grading."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    submissions: dict[str, int] = field(default_factory=dict)
    buckets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    late: list[dict[str, Any]] = field(default_factory=list)

    @property
    def average_percent(self) -> float | None:
        """Mean score in percent of the maximum, or None before anything is graded."""
        return mean_percent(self.rows)


def mean_percent(rows: list[dict[str, Any]]) -> float | None:
    """Mean of score / max_score in percent over graded rows; None when there are none."""
    graded = [r for r in rows if r["max_score"]]
    if not graded:
        return None
    return float(sum(100 * r["score"] / r["max_score"] for r in graded) / len(graded))


def _gradebook_exists(url: str) -> bool:
    # Reading must never create an empty SQLite gradebook as a side effect.
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).is_file()
    return True


def course_grades(settings: Settings, entry: CourseEntry) -> CourseGrades:
    """Submissions per assignment, the score distribution and who handed in late (blocking)."""
    report = CourseGrades()
    for assignment in entry.course.assignments:
        report.submissions[assignment.id] = 0
    from grader.course import GradingCourse  # nbgrader: see the module docstring

    course = GradingCourse.for_course(settings, entry)
    if not _gradebook_exists(course.gradebook_url):
        return report
    report.rows = course.grades()
    for row in report.rows:
        report.submissions[row["assignment"]] = report.submissions.get(row["assignment"], 0) + 1
        if row["max_score"]:
            percent = 100 * row["score"] / row["max_score"]
            report.buckets[BUCKETS[min(4, int(percent // 20))]] += 1
        if row["seconds_late"] > 0:
            report.late.append(
                {
                    "student": row["student"],
                    "assignment": row["assignment"],
                    "hours_late": round(row["seconds_late"] / 3600, 1),
                    "penalty": row["late_penalty"],
                }
            )
    return report


def average_score(settings: Settings, entries: list[CourseEntry]) -> float | None:
    """Quality Q: the mean percent score over every graded submission of every course."""
    return mean_percent([row for entry in entries for row in course_grades(settings, entry).rows])


def export_text(settings: Settings, entry: CourseEntry, exporter: str) -> str:
    """The course's grades by the nbgrader ExportPlugin ``exporter`` (grader/export.py),
    read-only from the gradebook (blocking); an empty export before anything was graded."""
    from traitlets.config import Config

    from grader.export import export_grades  # nbgrader: see the module docstring

    url = settings.gradebook_url(entry.course.id)
    return export_grades(
        Config(),
        url if _gradebook_exists(url) else None,
        entry.course.id,
        exporter=exporter,
        assignments=[a.id for a in entry.course.assignments],
    )
