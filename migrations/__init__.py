"""Alembic migrations: the schema's only source of change. Applied by `advisor db upgrade`."""
