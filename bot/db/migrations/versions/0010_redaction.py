"""Redaction before the LLM: per-channel switches and admin-defined patterns.

`channel_settings.redact_secrets` / `redact_pii` override `CANDOR_REDACT_SECRETS` /
`CANDOR_REDACT_PII` (NULL: inherit); `redact_patterns` maps a pattern name to its
regular expression (`/candor redact pattern add NAME REGEX`). See `bot.redaction`.

Revision ID: 0010_redaction
Revises: 0009_tools
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_redaction"
down_revision = "0009_tools"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("redact_secrets", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("redact_pii", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("redact_patterns", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_settings") as batch:
        batch.drop_column("redact_patterns")
        batch.drop_column("redact_pii")
        batch.drop_column("redact_secrets")
