"""Autograde runs in LearnHub's database: written by the grading CLI, read as metrics.

``learnhub grader autograde`` runs in the operator's process, not in the service, so it keeps
no counters a scraper could read. Each graded submission is recorded here instead (outcome,
reason, duration, sandbox seconds; no learner name), in the same write that copies the grades
for the learners' home pages (:meth:`grader.course.GradingCourse.record_grades`), and the
service turns the rows into Prometheus counters and a histogram when it is scraped
(:func:`autograde_figures`). Rows are only ever added, so the counts only grow, as Prometheus
counters must, and they survive restarts of the service and runs on other hosts that share
the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from hub.store import AutogradeRun, Database

#: Upper bounds (seconds) of the autograde duration histogram: a submission takes about 1.4 s
#: when nothing goes wrong (docs/benchmarks.md) and up to the sandbox's time limit when it
#: loops.
DURATION_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class GradedSubmission(Protocol):
    """What :func:`record_autograde_runs` reads of a :class:`grader.autograde.GradeResult`."""

    assignment: str
    outcome: str
    reason: str
    seconds: float
    notebooks: dict[str, dict[str, Any]]


def sandbox_seconds(result: GradedSubmission) -> float:
    """Seconds the submission's sandbox containers ran, all notebooks together."""
    total = 0.0
    for summary in result.notebooks.values():
        value = summary.get("seconds")
        if isinstance(value, int | float):
            total += float(value)
    return total


def record_autograde_runs(db: Database, course_id: str, results: Iterable[GradedSubmission]) -> int:
    """Add one row per graded submission (blocking); return how many."""
    now = datetime.now(UTC)
    rows = [
        AutogradeRun(
            course_id=course_id,
            assignment_id=result.assignment,
            outcome=result.outcome[:16],
            reason=result.reason[:32],
            seconds=max(0.0, float(result.seconds)),
            sandbox_seconds=sandbox_seconds(result),
            finished_at=now,
        )
        for result in results
    ]
    with db.transaction() as session:
        session.add_all(rows)
    return len(rows)


@dataclass
class AutogradeFigures:
    """Every recorded autograde run, summed for Prometheus."""

    #: Submissions by ``(outcome, reason)``.
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    #: By outcome: cumulative counts at each of :data:`DURATION_BUCKETS`, the total count and
    #: the sum of the durations.
    durations: dict[str, tuple[list[int], int, float]] = field(default_factory=dict)
    #: Seconds sandboxes ran, all runs together.
    sandbox_seconds: float = 0.0


def autograde_figures(
    db: Database, buckets: Sequence[float] = DURATION_BUCKETS
) -> AutogradeFigures:
    """Sum the recorded runs (blocking): two aggregate queries, whatever the number of rows."""
    run = AutogradeRun
    per_bucket = [sa.func.sum(sa.case((run.seconds <= bound, 1), else_=0)) for bound in buckets]
    figures = AutogradeFigures()
    with db.transaction() as session:
        for outcome, reason, count, sandbox in session.execute(
            sa.select(
                run.outcome, run.reason, sa.func.count(), sa.func.sum(run.sandbox_seconds)
            ).group_by(run.outcome, run.reason)
        ):
            figures.counts[(str(outcome), str(reason))] = int(count)
            figures.sandbox_seconds += float(sandbox or 0)
        for outcome, count, total, *cumulative in session.execute(
            sa.select(run.outcome, sa.func.count(), sa.func.sum(run.seconds), *per_bucket).group_by(
                run.outcome
            )
        ):
            figures.durations[str(outcome)] = (
                [int(c or 0) for c in cumulative],
                int(count),
                float(total or 0),
            )
    return figures
