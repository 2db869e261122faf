"""Per-user token spend: ledger, reservations, budget counters, budgets, price overrides.

Revision ID: 0002_spend
Revises: 0001_core
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_spend"
down_revision = "0001_core"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SETTLED = sa.text("status = 'settled'")


def upgrade() -> None:
    op.create_table(
        "spend_ledger",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(160), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=True),
        sa.Column("channel_id", sa.String(32), nullable=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cached_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cost_micro_usd", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("price_version", sa.String(64), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    # One charge per call: a retried Slack event can never be billed twice.
    op.create_index(
        "uq_spend_ledger_charge",
        "spend_ledger",
        ["call_id", "kind"],
        unique=True,
        sqlite_where=SETTLED,
        postgresql_where=SETTLED,
    )
    op.create_index("ix_spend_ledger_user_time", "spend_ledger", ["user_id", "created_at"])
    op.create_index("ix_spend_ledger_time", "spend_ledger", ["created_at"])

    op.create_table(
        "spend_reservations",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(160), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("period_key", sa.String(32), nullable=False),
        sa.Column("amount_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("call_id", "kind", name="uq_spend_reservations_call"),
    )
    op.create_index("ix_spend_reservations_status", "spend_reservations", ["status", "created_at"])

    op.create_table(
        "budget_usage",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("period_key", sa.String(32), primary_key=True),
        sa.Column("spent_micro_usd", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("held_micro_usd", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("user_warned", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("admins_alerted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )

    op.create_table(
        "spend_budgets",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("limit_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(16), nullable=True),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_by", sa.String(32), nullable=True),
    )

    op.create_table(
        "model_prices",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("input_micro_usd_per_m", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_micro_usd_per_m", sa.BigInteger(), nullable=False),
        sa.Column("output_micro_usd_per_m", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_by", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("model_prices")
    op.drop_table("spend_budgets")
    op.drop_table("budget_usage")
    op.drop_index("ix_spend_reservations_status", table_name="spend_reservations")
    op.drop_table("spend_reservations")
    op.drop_index("ix_spend_ledger_time", table_name="spend_ledger")
    op.drop_index("ix_spend_ledger_user_time", table_name="spend_ledger")
    op.drop_index("uq_spend_ledger_charge", table_name="spend_ledger")
    op.drop_table("spend_ledger")
