"""Money from what was paid: what each checkout must cost, and a ledger of verified payments.

``checkout_sessions`` learns the price LearnHub asked for when it created the session (Stripe
price id, amount, currency), so fulfilment can check the re-fetched line items against it.
``payments`` holds one row per verified LearnHub payment (a paid checkout session or a paid
subscription invoice), written only from objects re-fetched from Stripe; the dashboards sum
revenue from it instead of from webhook payloads.

Revision ID: 0009_payments
Revises: 0008_event_queue
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_payments"
down_revision: str | None = "0008_event_queue"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the expected price to checkout_sessions; create payments."""
    with op.batch_alter_table("checkout_sessions") as batch:
        batch.add_column(sa.Column("price_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("amount", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("currency", sa.String(3), nullable=True))
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("stripe_id", sa.String(255), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("course_id", sa.String(64), nullable=True),
        sa.Column("plan_id", sa.String(64), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    """Drop payments and the expected price columns."""
    op.drop_table("payments")
    with op.batch_alter_table("checkout_sessions") as batch:
        batch.drop_column("currency")
        batch.drop_column("amount")
        batch.drop_column("price_id")
