"""Autograde runs, one row per graded submission, for the operators' metrics.

``learnhub grader autograde`` runs in the operator's CLI process, which no scraper reads; it
records each submission's outcome, its duration and the seconds its sandboxes ran here, beside
the grade summaries it already writes, and the LearnHub service reads them back when Prometheus
scrapes ``/metrics``. No learner name: the figures are per outcome, not per person.

Revision ID: 0011_autograde_runs
Revises: 0010_grading_jobs
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_autograde_runs"
down_revision: str | None = "0010_grading_jobs"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create autograde_runs."""
    op.create_table(
        "autograde_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("assignment_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("sandbox_seconds", sa.Float, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    """Drop autograde_runs."""
    op.drop_table("autograde_runs")
