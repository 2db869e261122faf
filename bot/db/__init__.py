"""Candor's database: models, engine and session factory, repositories, migrations."""
