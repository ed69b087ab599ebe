"""Q&A and announcements in Markdown, stored rendered; reports, hiding, locking, the log.

Posts written before were plain text, shown as written (line breaks and indentation kept).
Each existing row's source becomes the Markdown that shows that same text
(:func:`hub.markdown.plain_text_source`: CommonMark's special characters escaped, line breaks
made hard) and its HTML is rendered from it, so nothing an old post said changes meaning
(``__eq__`` stays ``__eq__``, not bold ``eq``) and editing it later starts from Markdown.

Revision ID: 0014_qa_markdown_moderation
Revises: 0013_mail
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_qa_markdown_moderation"
down_revision: str | None = "0013_mail"
branch_labels: str | None = None
depends_on: str | None = None

#: (table, source column, rendered column) of every post kind.
_RENDERED = (
    ("questions", "body", "body_html"),
    ("answers", "body", "body_html"),
    ("announcements", "text", "text_html"),
)


def _render_existing(table: str, source: str, rendered: str) -> None:
    """Rewrite each row's plain text as Markdown and store it rendered."""
    # Imported here: the renderer is only needed while upgrading, not by alembic's start.
    from hub.markdown import plain_text_source, render

    rows = sa.table(
        table, sa.column("id", sa.Integer), sa.column(source, sa.Text), sa.column(rendered, sa.Text)
    )
    bind = op.get_bind()
    for row_id, text in bind.execute(sa.select(rows.c.id, rows.c[source])).all():
        markdown = plain_text_source(text or "")
        bind.execute(
            rows.update()
            .where(rows.c.id == row_id)
            .values({source: markdown, rendered: render(markdown)})
        )


def upgrade() -> None:
    """Add the rendered columns, the moderation state, post_reports and moderation_actions."""
    for table, source, rendered in _RENDERED:
        op.add_column(table, sa.Column(rendered, sa.Text, nullable=False, server_default=""))
        _render_existing(table, source, rendered)
    for table in ("questions", "answers"):
        op.add_column(
            table, sa.Column("status", sa.String(16), nullable=False, server_default="visible")
        )
    op.add_column(
        "questions", sa.Column("locked", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.create_table(
        "post_reports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("post_id", sa.Integer, nullable=False),
        sa.Column("reporter", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("resolved_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("kind", "post_id", "reporter", name="uq_post_report"),
    )
    op.create_index("ix_post_reports_open", "post_reports", ["course_id", "resolved_at"])
    op.create_table(
        "moderation_actions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("moderator", sa.String(255), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("post_id", sa.Integer, nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("acted_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_moderation_actions_course_id", "moderation_actions", ["course_id"])


def downgrade() -> None:
    """Drop the moderation tables and columns (the Markdown sources stay as they are)."""
    op.drop_index("ix_moderation_actions_course_id", "moderation_actions")
    op.drop_table("moderation_actions")
    op.drop_index("ix_post_reports_open", "post_reports")
    op.drop_table("post_reports")
    with op.batch_alter_table("questions") as batch:
        batch.drop_column("locked")
        batch.drop_column("status")
        batch.drop_column("body_html")
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("status")
        batch.drop_column("body_html")
    with op.batch_alter_table("announcements") as batch:
        batch.drop_column("text_html")
