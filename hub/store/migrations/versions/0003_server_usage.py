"""Course server usage (container-hours).

Revision ID: 0003_server_usage
Revises: 0002_exchange
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_server_usage"
down_revision: str | None = "0002_exchange"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create server_usage."""
    op.create_table(
        "server_usage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("username", "course_id", "started_at", name="uq_server_usage_run"),
    )


def downgrade() -> None:
    """Drop server_usage."""
    op.drop_table("server_usage")
