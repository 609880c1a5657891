"""The models and the migrations describe the same schema, on SQLite and on PostgreSQL.

A model change without a migration (or a migration that drifts from the models) fails here,
and so does a constraint without a conventional name, which SQLite batch migrations could not
address later.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from daemon import db as dbmod
from daemon.models import Base


def _diff(database: dbmod.Database) -> list[object]:
    with database.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))


def test_models_match_the_migrations(database_url: str, tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    dbmod.upgrade(database)
    assert _diff(database) == []
    database.dispose()


def test_every_constraint_has_a_conventional_name(database_url: str, tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    dbmod.upgrade(database)
    insp = inspect(database.engine)
    for table in insp.get_table_names():
        if table == "alembic_version":
            continue
        for uq in insp.get_unique_constraints(table):
            assert uq["name"] and uq["name"].startswith(f"uq_{table}_"), (table, uq)
        for ck in insp.get_check_constraints(table):
            assert ck["name"] and ck["name"].startswith(f"ck_{table}_"), (table, ck)
        if not database.is_sqlite:  # SQLite does not report FK names
            for fk in insp.get_foreign_keys(table):
                assert fk["name"] and fk["name"].startswith(f"fk_{table}_"), (table, fk)
    database.dispose()


def test_checks_refuse_an_unknown_status_and_priority(database_url: str, tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    dbmod.upgrade(database)
    now = datetime(2023, 10, 27, tzinfo=UTC)
    insert = ("INSERT INTO tickets (number, subject, status, priority, requester_name, "
              "requester_email, cc, fields, language, created_at, updated_at, co_handlers) "
              "VALUES (:n, '', :s, :p, '', 'a@b.example', '[]', '{}', 'en', :t, :t, '[]')")
    with database.engine.begin() as conn:
        conn.execute(text(insert), {"n": "TS1", "s": "accepted", "p": "P1", "t": now})
    for status, priority in (("open", "P1"), ("new", "P7")):
        with pytest.raises(IntegrityError), database.engine.begin() as conn:
            conn.execute(text(insert), {"n": "TS2", "s": status, "p": priority, "t": now})
    database.dispose()


def test_upgrade_from_0001_keeps_the_data_and_maps_old_statuses(
        database_url: str, tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    cfg = dbmod._alembic_config(database)
    command.upgrade(cfg, "0001")
    now = datetime(2023, 10, 27, tzinfo=UTC)
    insert = ("INSERT INTO tickets (number, subject, status, priority, requester_name, "
              "requester_email, cc, fields, language, created_at, updated_at, handler) "
              "VALUES (:n, 's', :s, 'P2', '', 'a@b.example', '[]', '{}', 'en', :t, :t, :h)")
    with database.engine.begin() as conn:
        conn.execute(text(insert), {"n": "TS1", "s": "open", "t": now, "h": None})
        conn.execute(text(insert), {"n": "TS2", "s": "open", "t": now, "h": "h@corp.example"})
        conn.execute(text(insert), {"n": "TS3", "s": "resolved", "t": now, "h": None})
    dbmod.upgrade(database)
    with database.engine.connect() as conn:
        rows = {str(number): str(status) for number, status in
                conn.execute(text("SELECT number, status FROM tickets"))}
    assert rows == {"TS1": "new", "TS2": "accepted", "TS3": "resolved"}
    assert _diff(database) == []
    database.dispose()
