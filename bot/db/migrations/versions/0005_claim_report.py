"""Processed-event claims record where the message was, so a stuck claim can be reported.

A claim that never finishes (a crash between claim and answer) is found by the
`sweep_stale_claims` job, which tells the user in the thread; for that the claim keeps
the workspace, channel, thread and user, and when its status last changed.

Revision ID: 0005_claim_report
Revises: 0004_feedback
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_claim_report"
down_revision = "0004_feedback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: claims written before this revision have none of it (the sweep then only
    # marks them failed, with nowhere to report).
    with op.batch_alter_table("processed_events") as batch:
        batch.add_column(sa.Column("workspace_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("channel_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("thread_ts", sa.String(32), nullable=True))
        batch.add_column(sa.Column("user_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    # The sweep asks for "still claimed, older than N minutes" every minute.
    op.create_index("ix_processed_events_status", "processed_events", ["status", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_processed_events_status", table_name="processed_events")
    with op.batch_alter_table("processed_events") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("user_id")
        batch.drop_column("thread_ts")
        batch.drop_column("channel_id")
        batch.drop_column("workspace_id")
