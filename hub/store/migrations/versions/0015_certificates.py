"""Certificates: one per learner who passed a course's `completion:` rule.

Revision ID: 0015_certificates
Revises: 0014_qa_markdown_moderation
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_certificates"
down_revision: str | None = "0014_qa_markdown_moderation"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create certificates."""
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("course_title", sa.String(200), nullable=False),
        sa.Column("percent", sa.Float, nullable=False),
        sa.Column("issued_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("username", "course_id", name="uq_certificates_learner_course"),
    )


def downgrade() -> None:
    """Drop certificates."""
    op.drop_table("certificates")
