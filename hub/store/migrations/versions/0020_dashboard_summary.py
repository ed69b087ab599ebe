"""The operator dashboard's enrolment chart as rows per week, computed once from every entitlement.

At 10,000 members the operator dashboard read all 15,500 entitlements on every view to draw
its enrolment chart (benchmarks/scale.py). ``dashboard_enrolment_weeks`` keeps the chart's
weekly changes, maintained on every write of an entitlement
(:mod:`hub.store.enrolment_summary`); this migration fills it from the entitlements there are,
counting every course (the first view with a catalog that leaves some out computes it again).

Revision ID: 0020_dashboard_summary
Revises: 0019_scale_indexes
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_dashboard_summary"
down_revision: str | None = "0019_scale_indexes"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_enrolment_weeks",
        sa.Column("week", sa.Date(), primary_key=True),
        sa.Column("starts", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
    )
    op.create_table(
        "dashboard_enrolment_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("excluded", sa.JSON(), nullable=False),
        sa.Column("seen", sa.JSON(), nullable=False),
        sa.Column("entitlements", sa.Integer(), nullable=False),
        sa.Column("last_update", sa.DateTime(), nullable=True),
    )
    # The backfill is the same computation the hooks and a rebuild use, so the three agree.
    from hub.store.enrolment_summary import rebuild

    rebuild(op.get_bind(), excluded=())


def downgrade() -> None:
    op.drop_table("dashboard_enrolment_state")
    op.drop_table("dashboard_enrolment_weeks")
