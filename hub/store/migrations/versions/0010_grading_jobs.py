"""Grading jobs: what instructors asked for from the dashboard, run by `learnhub grader worker`.

The LearnHub service (unprivileged) only inserts rows; the worker (root, for Docker) claims them,
writes progress per submission and the outcome. A partial unique index keeps at most one
``queued`` or ``running`` job per course, so a course's grading never runs twice at once even
when two instructors press a button in the same second (the second insert fails, the service
answers 409).

Revision ID: 0010_grading_jobs
Revises: 0009_payments
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_grading_jobs"
down_revision: str | None = "0009_payments"
branch_labels: str | None = None
depends_on: str | None = None

_KINDS = "'release', 'collect', 'autograde', 'feedback', 'export', 'extend', 'regrade-one'"
_STATES = "'queued', 'running', 'done', 'failed', 'interrupted'"
_ACTIVE = "state IN ('queued', 'running')"


def upgrade() -> None:
    """Create grading_jobs and its one-active-job-per-course index."""
    op.create_table(
        "grading_jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("assignment_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name="ck_grading_jobs_kind"),
        sa.CheckConstraint(f"state IN ({_STATES})", name="ck_grading_jobs_state"),
    )
    op.create_index("ix_grading_jobs_course", "grading_jobs", ["course_id", "id"])
    op.create_index("ix_grading_jobs_state", "grading_jobs", ["state"])
    op.create_index(
        "uq_grading_jobs_one_active",
        "grading_jobs",
        ["course_id"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )


def downgrade() -> None:
    """Drop grading_jobs."""
    op.drop_index("uq_grading_jobs_one_active", table_name="grading_jobs")
    op.drop_index("ix_grading_jobs_state", table_name="grading_jobs")
    op.drop_index("ix_grading_jobs_course", table_name="grading_jobs")
    op.drop_table("grading_jobs")
