"""Members edit their own questions and answers, instructors their announcements.

Each post gets ``edited_at`` (the page's "edited" marker); ``post_edits`` keeps what a post said
before each edit, so a moderator reading a report sees what was reported even after its author
changed it.

Revision ID: 0018_post_edits
Revises: 0017_member_timezone
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_post_edits"
down_revision: str | None = "0017_member_timezone"
branch_labels: str | None = None
depends_on: str | None = None

_EDITABLE = ("questions", "answers", "announcements")


def upgrade() -> None:
    """Add ``edited_at`` to the posts and the ``post_edits`` history."""
    for table in _EDITABLE:
        op.add_column(table, sa.Column("edited_at", sa.DateTime, nullable=True))
    op.create_table(
        "post_edits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("post_id", sa.Integer, nullable=False),
        sa.Column("editor", sa.String(255), nullable=False),
        sa.Column("edited_at", sa.DateTime, nullable=False),
        sa.Column("previous_title", sa.String(200), nullable=True),
        sa.Column("previous_body", sa.Text, nullable=False),
    )
    op.create_index("ix_post_edits_post", "post_edits", ["kind", "post_id"])


def downgrade() -> None:
    """Drop the edit history and the markers (the posts keep their edited text)."""
    op.drop_index("ix_post_edits_post", "post_edits")
    op.drop_table("post_edits")
    for table in _EDITABLE:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("edited_at")
