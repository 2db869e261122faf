"""Candor's database: models, engine and session factory, repositories, migrations.

May import: `bot.settings`, `bot.errors`, `bot.clock` and SQLAlchemy/Alembic; nothing
else of `bot/`, so every other package can build on it.
"""
