"""Assignment exchange: exchange_releases, exchange_submissions, exchange_feedback.

Revision ID: 0002_exchange
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_exchange"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the exchange tables."""
    op.create_table(
        "exchange_releases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("assignment_id", sa.String(128), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("notebooks", sa.JSON, nullable=False),
        sa.Column("released_by", sa.String(255), nullable=False),
        sa.Column("released_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("course_id", "assignment_id", name="uq_exchange_releases_assignment"),
    )
    op.create_table(
        "exchange_submissions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uid", sa.String(32), nullable=False, unique=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("assignment_id", sa.String(128), nullable=False),
        sa.Column("student", sa.String(255), nullable=False),
        sa.Column("submitted_at", sa.DateTime, nullable=False),
        sa.Column("timestamp", sa.String(64), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("checksums", sa.JSON, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
    )
    op.create_index(
        "ix_exchange_submissions_lookup",
        "exchange_submissions",
        ["course_id", "assignment_id", "student"],
    )
    op.create_table(
        "exchange_feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "submission_id",
            sa.Integer,
            sa.ForeignKey("exchange_submissions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("notebook_id", sa.String(255), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("released_by", sa.String(255), nullable=False),
        sa.Column("released_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("submission_id", "notebook_id", name="uq_exchange_feedback_notebook"),
    )


def downgrade() -> None:
    """Drop the exchange tables (the files under the exchange root are left alone)."""
    op.drop_table("exchange_feedback")
    op.drop_index("ix_exchange_submissions_lookup", table_name="exchange_submissions")
    op.drop_table("exchange_submissions")
    op.drop_table("exchange_releases")
