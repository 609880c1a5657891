"""Database engine, sessions, one-transaction-per-unit-of-work, and schema upgrades.

SQLite gets WAL mode, a busy timeout and ``BEGIN IMMEDIATE`` for every transaction, so
concurrent writers (several ``ticketd`` processes, or ``ingest`` beside ``run``) queue on the
lock instead of failing with "database is locked" when a read turns into a write. PostgreSQL is
used as is. Migrations are alembic scripts shipped inside the package (``daemon/migrations``);
:func:`upgrade` applies them, and every command that writes calls it first.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from daemon import row_ids  # noqa: F401  (ids handed out before a flush: see that module)
from daemon.errors import ConfigError, TransientError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# PostgreSQL SQLSTATEs worth retrying: the class 08 connection exceptions, serialization
# failure, deadlock, lock not available, and the server shutting down or starting up.
_TRANSIENT_SQLSTATE_CLASSES = ("08",)
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
# SQLite primary result codes worth retrying (the extended codes keep them in the low byte).
_TRANSIENT_SQLITE_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
SQLITE_BUSY_TIMEOUT_MS = 30_000


def parse_url(url: str, base_dir: Path) -> URL:
    """The one reading of ``[database] url`` (``db``, ``inspect`` and every command use it).

    ``postgres://`` (the form many hosting panels hand out) and a bare ``postgresql://`` mean
    the psycopg 3 driver we ship; a relative SQLite path is relative to the config file's
    folder. Nothing is created: :func:`resolve_url` also makes the SQLite file's folder.
    """
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"[database] url: expected a database URL, got {url!r}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_absolute():
            parsed = parsed.set(database=str(base_dir / path))
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg2":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (None for in-memory SQLite and for other databases)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def resolve_url(url: str, base_dir: Path) -> str:
    """:func:`parse_url` as a string, with the SQLite file's folder created."""
    parsed = parse_url(url, base_dir)
    path = sqlite_path(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return parsed.render_as_string(hide_password=False)


def is_transient(exc: OperationalError) -> bool:
    """A lock, a conflict or a lost connection (worth retrying), unlike a refused statement.

    Decided by the driver's error code, never by the message text (a column named "timeout"
    must not make a refused statement look like a timeout): psycopg's ``sqlstate``, SQLite's
    ``sqlite_errorcode``. A psycopg error without a SQLSTATE never reached the server, and a
    connection SQLAlchemy saw drop (``connection_invalidated``) is transient too.
    """
    if exc.connection_invalidated:
        return True
    orig: object = exc.orig
    if hasattr(orig, "sqlstate"):  # psycopg 3
        state = getattr(orig, "sqlstate", None)
        if state is None:
            return True
        return str(state).startswith(_TRANSIENT_SQLSTATE_CLASSES) or \
            state in _TRANSIENT_SQLSTATES
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _TRANSIENT_SQLITE_CODES
    return False


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _postgresql_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        """Values PostgreSQL compresses (TOAST: a raw mail, its text, a written mail) with
        lz4 instead of the default pglz, where the server has it (PostgreSQL 14 and newer,
        built with lz4): pglz costs the server several times the CPU, and a backlog's
        commits waited for it (68 MB of mail: 3 of the 4.5 s they took)."""
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET default_toast_compression = 'lz4'")
            dbapi_conn.commit()
        except Exception:  # an older server, or one without lz4: its default stays
            dbapi_conn.rollback()


@dataclass
class BatchMemory:
    """Answers a batch read once and keeps for the rest of its transaction, in
    ``session.info`` (the new-ticket budget, deduplication). It belongs to one transaction;
    any rollback in it (one message's savepoint included) makes it ``stale``, and its owner
    reads it again before the next answer."""

    transaction: SessionTransaction | None
    stale: bool = field(default=False, kw_only=True)


_Memory = TypeVar("_Memory", bound=BatchMemory)


def keep(session: Session, key: str, memory: BatchMemory) -> None:
    """Keep ``memory`` under ``key`` for the rest of the session's transaction."""
    session.info[key] = memory


def kept(session: Session, key: str, kind: type[_Memory]) -> _Memory | None:
    """What is kept under ``key`` for the session's current transaction (None: nothing)."""
    memory = session.info.get(key)
    if isinstance(memory, kind) and memory.transaction is session.get_transaction():
        return memory
    return None


def drop(session: Session, key: str) -> None:
    """Forget what is kept under ``key``: every question is asked with its own query."""
    session.info.pop(key, None)


@event.listens_for(Session, "after_soft_rollback")
def _stale_after_rollback(session: Session, _previous: Any) -> None:
    for memory in session.info.values():
        if isinstance(memory, BatchMemory):
            memory.stale = True


@contextmanager
def unflushed(session: Session, concerns: Callable[[object], bool]) -> Iterator[None]:
    """Queries inside read the database without writing the session's pending changes first
    (no autoflush), unless a change not written yet could alter their answer: an object
    changed or deleted for which ``concerns(obj)`` is true. Objects added and not written
    are the caller's to look at (a batch's new rows are answered from the session). Intake
    writes a whole batch in one flush; a lookup should not force it out message by message."""
    if any(concerns(obj) for pending in (session.dirty, session.deleted) for obj in pending):
        session.flush()
    with session.no_autoflush:
        yield


@dataclass
class Database:
    """An engine and its session factory."""

    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def connect(url: str, base_dir: Path, *, echo: bool = False) -> Database:
    url = resolve_url(url, base_dir)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.startswith("postgresql"):
        kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_setup(engine)
    elif engine.dialect.name == "postgresql":
        _postgresql_setup(engine)
    return Database(engine, sessionmaker(engine, expire_on_commit=False))


def _alembic_config(db: Database) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = db.engine
    return cfg


MIGRATION_LOCK = 0x7469636B  # "tick": the advisory lock that serialises schema upgrades


def upgrade(db: Database) -> None:
    """Create or migrate the schema to the newest revision (idempotent).

    A database already at the newest revision (every start but the first after an upgrade
    of ticketd) costs one SELECT: alembic and the migration environment are loaded only when
    there is something to do. On PostgreSQL a session advisory lock makes instances that start
    together on an empty schema take turns instead of racing; SQLite's write lock does the
    same by itself.
    """
    if is_current(db):
        return
    from alembic import command

    try:
        if db.is_sqlite:
            command.upgrade(_alembic_config(db), "head")
            return
        with db.engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
            try:
                command.upgrade(_alembic_config(db), "head")
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
                conn.commit()
    except OperationalError as exc:
        raise TransientError(f"database: cannot upgrade schema: {exc.orig}") from exc


_REVISION_LINE = re.compile(
    r"""^(down_revision|revision)\s*(?::[^=\n]*)?=\s*(?:"([^"]*)"|'([^']*)'|None)\s*$""",
    re.MULTILINE)


@functools.cache
def head_from_files() -> str | None:
    """The newest revision, read from the migration files' text without importing alembic:
    the one revision no other file names as its ``down_revision``. None when the files do
    not say it plainly (several heads, a computed value): :func:`upgrade` then asks alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = {m.group(1): m.group(2) or m.group(3)
                 for m in _REVISION_LINE.finditer(path.read_text(encoding="utf-8"))}
        if "revision" not in found:
            continue
        if found["revision"] is None:
            return None
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def is_current(db: Database) -> bool:
    """Is the schema at the newest revision? One SELECT of ``alembic_version``; False when it
    cannot tell (no such table yet, an unreachable database: the upgrade reports that)."""
    head = head_from_files()
    if head is None:
        return False
    try:
        with db.engine.connect() as conn:
            stored = [row[0] for row in conn.exec_driver_sql(
                "SELECT version_num FROM alembic_version")]
    except SQLAlchemyError:
        return False
    return stored == [head]


def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def table_names(db: Database) -> list[str]:
    return sorted(inspect(db.engine).get_table_names())
