"""Stripe events: an index on the outcome, so the queue of accepted events is found fast.

The webhook records each event as ``queued`` before answering Stripe and processes it moments
later; at start (and every reconcile) the service reads back the queued ones. ``stripe_events``
keeps every event ever received, so that read must not scan them all.

Revision ID: 0008_event_queue
Revises: 0007_questions
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0008_event_queue"
down_revision: str | None = "0007_questions"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Index stripe_events.outcome."""
    op.create_index("ix_stripe_events_outcome", "stripe_events", ["outcome"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_stripe_events_outcome", table_name="stripe_events")
