"""Members' time zones: the zone each member reads dates in (hub/i18n/dates.py).

Revision ID: 0017_member_timezone
Revises: 0016_publish_jobs
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_member_timezone"
down_revision: str | None = "0016_publish_jobs"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create member_preferences (no row: every member reads UTC until they choose)."""
    op.create_table(
        "member_preferences",
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    """Drop member_preferences."""
    op.drop_table("member_preferences")
