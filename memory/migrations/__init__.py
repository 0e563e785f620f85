"""Alembic migrations of session memory; run through `memory.database`, no alembic.ini needed."""
