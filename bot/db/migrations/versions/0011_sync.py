"""Knowledge re-sync and the Ask-a-human reminder.

- `knowledge_syncs` (see `bot.db.sync_models`): sources registered with `--sync`, which
  the `kb_sync` job re-ingests incrementally.
- `answer_reviews.asked_at`: when someone first pressed **Ask a human** on the answer
  (an item opened by a flag or a 👎 may be asked about later);
  `answer_reviews.reminded_at`: when the one reminder was posted in the thread (set by a
  guarded UPDATE, so two replicas never both remind).

Revision ID: 0011_sync
Revises: 0010_redaction
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_sync"
down_revision = "0010_redaction"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "knowledge_syncs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(1000), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("label", sa.String(300), nullable=True),
        sa.Column("workspace_id", sa.String(32), nullable=True),
        sa.Column("registered_by", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_result", sa.String(200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=True),
        sa.UniqueConstraint("kind", "target", name="uq_knowledge_syncs_target"),
    )
    with op.batch_alter_table("answer_reviews") as batch:
        batch.add_column(sa.Column("asked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("answer_reviews") as batch:
        batch.drop_column("reminded_at")
        batch.drop_column("asked_at")
    op.drop_table("knowledge_syncs")
