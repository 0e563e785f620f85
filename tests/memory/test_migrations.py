"""The schema belongs to the Alembic migrations: they build it, the models agree with it, and the app
upgrades an old database on start or refuses with the command to run."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from memory import Database
from memory.database import head_revision
from memory.models import Base
from schemas import DatabaseOutOfDate


def test_migrations_build_exactly_the_models(database_url):
    with Database.open(database_url) as db:
        assert db.revision() == head_revision()
        with db.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_downgrade_to_nothing_and_back(database_url):
    with Database.open(database_url) as db:
        db.downgrade("base")
        with db.connect() as conn:
            assert not inspect(conn).has_table("sessions")
        db.upgrade()
        assert db.revision() == head_revision()


def test_an_empty_database_is_upgraded_on_start(database_url):
    with Database(database_url) as raw:
        assert raw.revision() is None
    with Database.open(database_url) as db:  # what the app does on start
        assert db.revision() == head_revision()


def test_without_auto_upgrade_it_refuses_and_names_the_setting(database_url):
    with pytest.raises(DatabaseOutOfDate, match="needs") as info:
        Database.open(database_url, auto_upgrade=False)
    assert info.value.field == "VITRON_DATABASE_AUTO_UPGRADE" and "upgrade it" in info.value.fix


def test_a_database_from_a_newer_version_is_refused(database_url):
    with Database.open(database_url) as db, db.connect(write=True) as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(DatabaseOutOfDate, match="newer version"):
        Database.open(database_url)
