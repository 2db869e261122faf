"""The review loop: review items for answers, channel experts, a per-channel review channel.

See `bot.db.review_models`: `answer_reviews` (flagged, 👎 and Ask-a-human answers and what
reviewers did with them) and `channel_experts` (who Ask a human mentions). The column
`channel_settings.review_channel` overrides the workspace's `SLACK_REVIEW_CHANNEL`.

Revision ID: 0008_review
Revises: 0007_confidence
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_review"
down_revision = "0007_confidence"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "answer_reviews",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("answer_id", _ID, nullable=False, unique=True),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("thread_ts", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("reasons", sa.JSON(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("raised_by", sa.String(32), nullable=True),
        sa.Column("review_channel", sa.String(32), nullable=True),
        sa.Column("review_ts", sa.String(32), nullable=True),
        sa.Column("reviewer_id", sa.String(32), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("knowledge_source", sa.String(300), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_answer_reviews_status", "answer_reviews", ["status", "created_at"])
    op.create_table(
        "channel_experts",
        sa.Column("workspace_id", sa.String(32), primary_key=True),
        sa.Column("channel_id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("added_by", sa.String(32), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("review_channel", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_settings") as batch:
        batch.drop_column("review_channel")
    op.drop_table("channel_experts")
    op.drop_index("ix_answer_reviews_status", table_name="answer_reviews")
    op.drop_table("answer_reviews")
