"""Initial schema: entitlements, stripe_events, checkout_sessions, demo_stripe_objects.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "entitlements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("course_id", sa.String(64)),
        sa.Column("plan_id", sa.String(64)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(64)),
        sa.Column("period_end", sa.DateTime),
        sa.Column("stripe_customer_id", sa.String(255)),
        sa.Column("stripe_checkout_session_id", sa.String(255), unique=True),
        sa.Column("stripe_subscription_id", sa.String(255), unique=True),
        sa.Column("stripe_payment_intent_id", sa.String(255)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.CheckConstraint(
            "(course_id IS NULL) <> (plan_id IS NULL)", name="ck_entitlements_course_xor_plan"
        ),
        sa.CheckConstraint(
            "source IN ('purchase', 'subscription', 'manual', 'instructor')",
            name="ck_entitlements_source",
        ),
        sa.CheckConstraint(
            "status IN ('active', 'pending', 'past_due', 'revoked')", name="ck_entitlements_status"
        ),
    )
    op.create_index("ix_entitlements_username", "entitlements", ["username"])
    op.create_index("ix_entitlements_payment_intent", "entitlements", ["stripe_payment_intent_id"])
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(255), nullable=False, unique=True),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "checkout_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.String(255), nullable=False, unique=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("course_id", sa.String(64)),
        sa.Column("plan_id", sa.String(64)),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "demo_stripe_objects",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("object", sa.String(64), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_demo_stripe_objects_object", "demo_stripe_objects", ["object", "created"])


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table("demo_stripe_objects")
    op.drop_table("checkout_sessions")
    op.drop_table("stripe_events")
    op.drop_table("entitlements")
