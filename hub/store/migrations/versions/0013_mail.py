"""Mail: the outbox and the members' addresses, languages and notice opt-outs.

Revision ID: 0013_mail
Revises: 0011_autograde_runs
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_mail"
down_revision: str | None = "0011_autograde_runs"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create mail_outbox and member_emails."""
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=True, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_mail_outbox_due", "mail_outbox", ["state", "next_attempt_at"])
    op.create_table(
        "member_emails",
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("verified_at", sa.DateTime, nullable=True),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("opt_outs", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_member_emails_address", "member_emails", ["address"])


def downgrade() -> None:
    """Drop the mail tables."""
    op.drop_index("ix_member_emails_address", table_name="member_emails")
    op.drop_table("member_emails")
    op.drop_index("ix_mail_outbox_due", table_name="mail_outbox")
    op.drop_table("mail_outbox")
