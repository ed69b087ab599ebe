"""Indexes for reading one course's entitlements and payments.

The instructor dashboard reads a course's entitlements (of the course, or of a plan that
includes it) and its ledger rows. Without an index on ``course_id`` / ``plan_id`` each view
scanned every member's rows: 15,000 entitlements at 10,000 members (benchmarks/scale.py), and
the scan grows with the platform, not with the course.

Revision ID: 0019_scale_indexes
Revises: 0018_post_edits
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0019_scale_indexes"
down_revision: str | None = "0018_post_edits"
branch_labels: str | None = None
depends_on: str | None = None

_INDEXES = [
    ("ix_entitlements_course_id", "entitlements", ["course_id"]),
    ("ix_entitlements_plan_id", "entitlements", ["plan_id"]),
    ("ix_payments_course_id", "payments", ["course_id"]),
]


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
