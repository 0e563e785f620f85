"""Faults reproduced on real parts: both session databases (SQLite in tmp_path, a fresh PostgreSQL database)."""

from __future__ import annotations

from tests.memory.conftest import database_url, memory, memory_settings, postgres_database

__all__ = ["database_url", "memory", "memory_settings", "postgres_database"]
