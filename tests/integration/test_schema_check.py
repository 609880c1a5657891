"""Start-up's schema check: a database at the newest revision costs one SELECT and no
alembic; any other state (empty, older) still goes through alembic's upgrade (SQLite and
PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import event

from daemon import db as dbmod


def test_the_head_read_from_the_files_is_alembics_head() -> None:
    assert dbmod.head_from_files() == dbmod.head_revision()
    assert dbmod.head_from_files() is not None


def test_a_current_schema_is_checked_with_one_statement(database_url: str,
                                                        tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    assert not dbmod.is_current(database)          # empty: alembic creates the schema
    dbmod.upgrade(database)
    assert dbmod.current_revision(database) == dbmod.head_revision()
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    dbmod.upgrade(database)
    event.remove(database.engine, "before_cursor_execute", count)
    # (SQLite's BEGIN IMMEDIATE, which every transaction here starts with, aside)
    assert [s for s in statements if not s.startswith("BEGIN")] == [
        "SELECT version_num FROM alembic_version"]
    database.dispose()


def test_an_older_schema_is_still_upgraded(database_url: str, tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    command.upgrade(dbmod._alembic_config(database), "0003")
    assert not dbmod.is_current(database)
    dbmod.upgrade(database)
    assert dbmod.is_current(database)
    assert dbmod.current_revision(database) == dbmod.head_revision()
    database.dispose()
