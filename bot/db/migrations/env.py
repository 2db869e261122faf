"""Alembic environment: runs on a connection handed in by `bot.db.engine.upgrade`."""

from __future__ import annotations

from alembic import context

from bot.db.models import Base

config = context.config
target_metadata = Base.metadata

connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - Candor always hands a connection in
    raise RuntimeError("Run migrations with `candor db upgrade`, which provides the connection.")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
