"""Course announcements.

Revision ID: 0006_announcements
Revises: 0005_course_reviews
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_announcements"
down_revision: str | None = "0005_course_reviews"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create announcements."""
    op.create_table(
        "announcements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("posted_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_announcements_course_id", "announcements", ["course_id"])


def downgrade() -> None:
    """Drop announcements."""
    op.drop_index("ix_announcements_course_id", "announcements")
    op.drop_table("announcements")
