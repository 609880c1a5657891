"""Which database errors are worth retrying, decided by the driver's code, on real errors.

Intake leaves a message in its folder for a transient error (a lock, a conflict, a lost
connection) and quarantines it for a refused statement. The old rule looked for words such as
"timeout" or "connection" in the message, so a refused statement that merely mentioned one
blocked its mailbox for ever, and PostgreSQL's "could not obtain lock" was not retried.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from daemon.app import App
from daemon.db import is_transient
from tests.conftest import _backends


def error_of(run: Callable[[], object]) -> OperationalError:
    with pytest.raises(OperationalError) as info:
        run()
    return info.value


def test_a_refused_statement_is_not_transient_even_if_it_says_timeout(app: App) -> None:
    def query() -> None:
        with app.db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT timeout FROM tickets")

    if app.db.is_sqlite:  # "no such column: timeout" is an OperationalError in SQLite
        exc = error_of(query)
        assert "timeout" in str(exc.orig)
        assert not is_transient(exc)
    else:  # PostgreSQL: a statement_timeout cancels the statement (57014), not a lock
        def slow() -> None:
            with app.db.engine.connect() as conn:
                conn.exec_driver_sql("SET statement_timeout = 1")
                conn.exec_driver_sql("SELECT pg_sleep(2)")

        exc = error_of(slow)
        assert getattr(exc.orig, "sqlstate", None) == "57014" and "timeout" in str(exc.orig)
        assert not is_transient(exc)


def test_a_lock_held_elsewhere_is_transient(app: App) -> None:
    url = app.db.engine.url
    with app.db.engine.connect() as holder:
        if app.db.is_sqlite:
            holder.exec_driver_sql("SELECT 1")  # ticketd's SQLite begins IMMEDIATE: write lock
            impatient = create_engine(url, connect_args={"timeout": 0})

            def write() -> None:
                with impatient.connect() as conn:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            holder.exec_driver_sql(
                "INSERT INTO leases (name, holder, expires_at) VALUES ('x', 'a', now())")
            holder.commit()
            holder.exec_driver_sql("SELECT * FROM leases WHERE name = 'x' FOR UPDATE")
            impatient = create_engine(url)

            def write() -> None:
                with impatient.connect() as conn:
                    conn.exec_driver_sql("SELECT * FROM leases FOR UPDATE NOWAIT")

        try:
            exc = error_of(write)
        finally:
            impatient.dispose()
            holder.rollback()
    if app.db.is_sqlite:
        assert getattr(exc.orig, "sqlite_errorcode", None) == 5  # SQLITE_BUSY
    else:
        assert getattr(exc.orig, "sqlstate", None) == "55P03"  # could not obtain lock
        assert "locked" not in str(exc.orig)  # the old word list missed it
    assert is_transient(exc)


@pytest.mark.parametrize("database_url", [b for b in _backends() if b != "sqlite"],
                         indirect=True)  # SQLite has no server to kill a connection
def test_a_connection_killed_by_the_server_is_transient(app: App) -> None:
    victim_engine = create_engine(app.db.engine.url)
    try:
        with victim_engine.connect() as victim, app.db.engine.connect() as admin:
            pid = victim.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            admin.commit()
            exc = error_of(lambda: victim.exec_driver_sql("SELECT 1"))
    finally:
        victim_engine.dispose()
    assert is_transient(exc)
