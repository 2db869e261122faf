"""Tools: admins' tool permissions, approvals of calls with side effects, a step limit.

`tool_permissions` holds who may use which tool where (and which tools an admin marked
read-only); `tool_approvals` the calls waiting for a person; `channel_settings.tool_max_steps`
bounds the tool-calling loop per channel (NULL inherits).

Revision ID: 0009_tools
Revises: 0008_review
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_tools"
down_revision = "0008_review"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tool_permissions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("server", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=True),
        sa.Column("read_only", sa.Boolean(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(32), nullable=True),
        sa.UniqueConstraint(
            "workspace_id", "channel_id", "server", "tool", name="uq_tool_permissions"
        ),
    )
    op.create_table(
        "tool_approvals",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("thread_ts", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("decided_by", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("tool_max_steps", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_settings") as batch:
        batch.drop_column("tool_max_steps")
    op.drop_table("tool_approvals")
    op.drop_table("tool_permissions")
