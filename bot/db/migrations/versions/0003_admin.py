"""Admin tables: the admin allowlist and the audit log of admin changes.

Revision ID: 0003_admin
Revises: 0002_spend
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_admin"
down_revision = "0002_spend"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "admin_users",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("added_by", sa.String(32), nullable=True),
        sa.Column("added_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "admin_audit",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_admin_audit_created", "admin_audit", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_admin_audit_created", table_name="admin_audit")
    op.drop_table("admin_audit")
    op.drop_table("admin_users")
