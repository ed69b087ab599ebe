"""Grading jobs may publish a course's materials (`publish`, hub/publishing.py).

The dashboard's "Publish materials" is a job like the grading steps: the service (unprivileged)
queues it, the worker (root) makes the version the spawner mounts. Only the kind constraint
changes. SQLite cannot alter a constraint, so the table is copied (batch mode); the
one-active-job-per-course partial index is dropped first and made again afterwards, so the copy
cannot lose its WHERE clause.

Revision ID: 0016_publish_jobs
Revises: 0015_certificates
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_publish_jobs"
down_revision: str | None = "0015_certificates"
branch_labels: str | None = None
depends_on: str | None = None

_KINDS = "'release', 'collect', 'autograde', 'feedback', 'export', 'extend', 'regrade-one'"
_ACTIVE = "state IN ('queued', 'running')"


def _set_kinds(kinds: str) -> None:
    op.drop_index("uq_grading_jobs_one_active", table_name="grading_jobs")
    with op.batch_alter_table("grading_jobs", recreate="auto") as batch:
        batch.drop_constraint("ck_grading_jobs_kind", type_="check")
        batch.create_check_constraint("ck_grading_jobs_kind", sa.text(f"kind IN ({kinds})"))
    op.create_index(
        "uq_grading_jobs_one_active",
        "grading_jobs",
        ["course_id"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )


def upgrade() -> None:
    """Allow the kind `publish`."""
    _set_kinds(_KINDS + ", 'publish'")


def downgrade() -> None:
    """Back to the grading kinds (publish jobs are removed first)."""
    op.execute("DELETE FROM grading_jobs WHERE kind = 'publish'")
    _set_kinds(_KINDS)
