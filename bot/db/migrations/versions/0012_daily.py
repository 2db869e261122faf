"""Image generation: a per-channel image model, and per-image prices.

`channel_settings.image_model` (NULL: inherit; `off` switches off a default) turns the
`generate_image` tool on for a channel; `image_prices` holds admins' prices per image
(`/candor image-price MODEL USD`), over the shipped ones in `bot.spend.prices`.

Revision ID: 0012_daily
Revises: 0011_sync
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_daily"
down_revision = "0011_sync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channel_settings") as batch:
        batch.add_column(sa.Column("image_model", sa.String(128), nullable=True))
    op.create_table(
        "image_prices",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("micro_usd_per_image", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("image_prices")
    with op.batch_alter_table("channel_settings") as batch:
        batch.drop_column("image_model")
