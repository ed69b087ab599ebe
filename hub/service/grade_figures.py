"""The operator dashboard's quality figure (Q), without opening every gradebook on every view.

Q is the mean percent score over every graded submission of every course, read from the
courses' nbgrader gradebooks (:func:`grader.reports.average_score`). Opening a gradebook is an
SQLite file, nbgrader's ORM and a query per assignment: 200 courses cost the view a
gradebook each, every time (``benchmarks/scale_dashboard.py --gradebooks`` measures it). Here
each course's scores are kept with the stamp of its gradebook file (modification time and
size, of the file and its journal): a view opens only the gradebooks that changed since the
last one. A gradebook that is not a file (``database.gradebook_url`` on PostgreSQL) has no
stamp to compare, so its scores are reused for :data:`SERVER_GRADEBOOK_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grader.reports import course_grades
from hub.courses import CourseEntry
from hub.settings import Settings

#: How long the scores of a gradebook on a database server are reused.
SERVER_GRADEBOOK_SECONDS = 60.0

#: What tells a gradebook file changed: (mtime_ns, size) of the file, its WAL and its journal.
Stamp = tuple[tuple[int, int], ...]


def gradebook_stamp(url: str) -> Stamp | None:
    """The stamp of an SQLite gradebook file (``()`` when there is none yet), or None when
    the gradebook is not a file."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    stamp = []
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-journal")):
        try:
            info = candidate.stat()
        except FileNotFoundError:
            continue
        stamp.append((info.st_mtime_ns, info.st_size))
    return tuple(stamp)


@dataclass(frozen=True)
class _Scores:
    stamp: Stamp | None
    read_at: float
    #: Percent of the maximum of each graded submission, in the gradebook's order.
    percents: tuple[float, ...]


class GradebookScores:
    """Every course's graded percents, each read again only when its gradebook changed (one
    per service; thread-safe, as views read it from worker threads)."""

    def __init__(
        self,
        read: Callable[[Settings, CourseEntry], Sequence[float]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read or _graded_percents
        self._clock = clock
        self._scores: dict[str, _Scores] = {}
        self._lock = threading.Lock()
        #: Gradebooks opened so far (tests and the benchmark read it).
        self.opened = 0

    def average(self, settings: Settings, entries: Sequence[CourseEntry]) -> float | None:
        """Q: the mean percent over every graded submission of ``entries`` (blocking); the same
        figure as :func:`grader.reports.average_score`."""
        percents: list[float] = []
        with self._lock:
            for entry in entries:
                percents.extend(self._course(settings, entry))
        if not percents:
            return None
        return float(sum(percents) / len(percents))

    def _course(self, settings: Settings, entry: CourseEntry) -> tuple[float, ...]:
        course_id = entry.course.id
        stamp = gradebook_stamp(settings.gradebook_url(course_id))
        known = self._scores.get(course_id)
        now = self._clock()
        if known is not None:
            if stamp is not None and known.stamp == stamp:
                return known.percents
            if stamp is None and now - known.read_at < SERVER_GRADEBOOK_SECONDS:
                return known.percents
        if stamp == ():  # no gradebook file yet: nothing graded, nothing to open
            percents: tuple[float, ...] = ()
        else:
            self.opened += 1
            percents = tuple(self._read(settings, entry))
        self._scores[course_id] = _Scores(stamp, now, percents)
        return percents


def _graded_percents(settings: Settings, entry: CourseEntry) -> list[float]:
    # grader.reports.mean_percent's terms, in its order.
    rows = course_grades(settings, entry).rows
    return [100 * r["score"] / r["max_score"] for r in rows if r["max_score"]]
