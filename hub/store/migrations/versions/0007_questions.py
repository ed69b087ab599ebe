"""Course Q&A: questions, answers, votes.

Revision ID: 0007_questions
Revises: 0006_announcements
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_questions"
down_revision: str | None = "0006_announcements"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create questions, answers and answer_votes."""
    op.create_table(
        "questions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("course_id", sa.String(64), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("accepted_answer_id", sa.Integer, nullable=True),
    )
    op.create_index("ix_questions_course_id", "questions", ["course_id"])
    op.create_table(
        "answers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("question_id", sa.Integer, sa.ForeignKey("questions.id"), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_answers_question_id", "answers", ["question_id"])
    op.create_table(
        "answer_votes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("answer_id", sa.Integer, sa.ForeignKey("answers.id"), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.UniqueConstraint("answer_id", "username", name="uq_answer_vote"),
    )
    op.create_index("ix_answer_votes_answer_id", "answer_votes", ["answer_id"])


def downgrade() -> None:
    """Drop the Q&A tables."""
    op.drop_table("answer_votes")
    op.drop_table("answers")
    op.drop_table("questions")
