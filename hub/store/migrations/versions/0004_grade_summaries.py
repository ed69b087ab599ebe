"""Grade summaries for progress pages.

Revision ID: 0004_grade_summaries
Revises: 0003_server_usage
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_grade_summaries"
down_revision: str | None = "0003_server_usage"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create grade_summaries."""
    op.create_table(
        "grade_summaries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("assignment_id", sa.String(128), nullable=False),
        sa.Column("student", sa.String(255), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("max_score", sa.Float, nullable=False),
        sa.Column("graded_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("course_id", "assignment_id", "student", name="uq_grade_summary"),
    )


def downgrade() -> None:
    """Drop grade_summaries."""
    op.drop_table("grade_summaries")
