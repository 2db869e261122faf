"""Confidence: each answer's reasons and signals; per-channel strict mode, judge, threshold.

`answers.reasons` (JSON list of sentences, main first) and `answers.signals` (JSON: the
raw signals behind the confidence) join the existing `confidence` and `flagged`.
`channel_settings` gains `strict`, `judge_model` and `flag_threshold` (NULL: inherit).

Revision ID: 0007_confidence
Revises: 0006_jobs
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_confidence"
down_revision = "0006_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("answers") as batch:
        batch.add_column(sa.Column("reasons", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("signals", sa.JSON(), nullable=True))
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("strict", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("judge_model", sa.String(128), nullable=True))
        batch.add_column(sa.Column("flag_threshold", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_settings") as batch:
        batch.drop_column("flag_threshold")
        batch.drop_column("judge_model")
        batch.drop_column("strict")
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("signals")
        batch.drop_column("reasons")
