"""Session memory on both databases: SQLite in tmp_path, and a fresh PostgreSQL database on loopback."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy.engine import make_url

from memory import SessionMemory
from schemas import VitronSettings
from tests.services import POSTGRES_ADMIN_URL, require


@pytest.fixture(scope="session")
def postgres_database():
    """A database of its own for this test run, dropped at the end; yields its URL."""
    admin = make_url(POSTGRES_ADMIN_URL)
    require("PostgreSQL", admin.host or "127.0.0.1", admin.port or 5432)
    name = f"vitron_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty(url: str) -> None:
    """Remove every table (ours, Alembic's and the checkpointer's): each test starts from an empty database."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vitron.db'}"
    url = request.getfixturevalue("postgres_database")
    _empty(url)
    return url


@pytest.fixture
def memory_settings(tmp_path, database_url) -> VitronSettings:
    return VitronSettings(home=tmp_path / "home", database_url=database_url)


@pytest.fixture
def memory(memory_settings):
    with SessionMemory.from_settings(memory_settings) as memory:
        yield memory
