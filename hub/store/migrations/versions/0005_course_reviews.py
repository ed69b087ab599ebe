"""Course reviews (ratings behind the operator's satisfaction figure U).

Revision ID: 0005_course_reviews
Revises: 0004_grade_summaries
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_course_reviews"
down_revision: str | None = "0004_grade_summaries"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create course_reviews."""
    op.create_table(
        "course_reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("course_id", "username", name="uq_course_review"),
    )


def downgrade() -> None:
    """Drop course_reviews."""
    op.drop_table("course_reviews")
