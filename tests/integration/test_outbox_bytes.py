"""A written mail's bytes live in ``outbox_bytes``, apart from the outbox row whose status
changes, on SQLite and PostgreSQL (``database_url``).

Why: SQLite rewrites a whole row on every UPDATE, blobs included, so with the bytes on the row
each claim, "sent" or retry wrote the mail into the WAL again. What must hold: the bytes are
bound to one statement in a mail's life (the INSERT that stores them), whatever its status
changes; a status change writes next to nothing to SQLite's WAL; the row's ``size`` is their
length (the claim budgets its reads with it); a second store of the same mail (a claim taken
over) keeps the first bytes; migration 0008 moves existing bytes out of ``outbox`` and its
downgrade moves them back, in chunks.
"""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic import command
from sqlalchemy import LargeBinary, event, inspect, select, text

from daemon import db as dbmod
from daemon.app import App
from daemon.clock import FixedClock
from daemon.errors import TransportTemporary
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import OutboxMail
from daemon.replies import outbox, resend
from daemon.replies.notify import Notify
from daemon.replies.writer import Written
from tests import messages
from tests.conftest import make_config
from tests.integration.test_flush_groups import (
    COMPLETE,
    FailingAt,
    delivered,
    pad,
    queue,
    stored,
)
from tests.writing import stored_bytes

MiB = 1024 * 1024
VERSIONS = Path(dbmod.__file__).parent / "migrations" / "versions"


def migration_0008() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0008",
                                                  VERSIONS / "0008_outbox_bytes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unwritten(app: App, count: int) -> None:
    """``count`` new tickets whose mails are queued, not written."""
    intake = Intake(app, notifier=Notify(app))
    for n in range(count):
        result = intake.ingest(RawMail(messages.mail(
            subject=f"OA 无法登录 {n}", body=COMPLETE, sender=f"user{n}@corp.example"), "t"))
        assert result.action == "created", result


def _binary_values(parameters: Any) -> Iterator[bytes]:
    parameters = getattr(parameters, "obj", parameters)  # psycopg wraps bytes in Binary
    if isinstance(parameters, (bytes, bytearray, memoryview)):
        yield bytes(parameters)
    elif isinstance(parameters, dict):
        for value in parameters.values():
            yield from _binary_values(value)
    elif isinstance(parameters, (list, tuple)):
        for value in parameters:
            yield from _binary_values(value)


@pytest.fixture
def bound(app: App) -> Iterator[list[tuple[str, bytes]]]:
    """(statement, bytes value) for every bytes value bound to a statement, in order."""
    seen: list[tuple[str, bytes]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.extend((" ".join(statement.split()), v) for v in _binary_values(parameters))

    event.listen(app.db.engine, "before_cursor_execute", listen)
    yield seen
    event.remove(app.db.engine, "before_cursor_execute", listen)


def test_the_outbox_row_holds_no_bytes(app: App) -> None:
    """The table whose rows change status has no blob column (on SQLite every UPDATE of a row
    would rewrite it whole); the bytes' table has one, keyed by the outbox row."""
    insp = inspect(app.db.engine)
    outbox_columns = {c["name"]: c for c in insp.get_columns("outbox")}
    assert "raw" not in outbox_columns and "size" in outbox_columns
    assert not any(isinstance(c["type"], LargeBinary) for c in outbox_columns.values())
    assert {c["name"] for c in insp.get_columns("outbox_bytes")} == {"outbox_id", "raw"}
    assert insp.get_pk_constraint("outbox_bytes")["constrained_columns"] == ["outbox_id"]
    [fk] = insp.get_foreign_keys("outbox_bytes")
    assert (fk["referred_table"], fk["referred_columns"]) == ("outbox", ["id"])


def test_a_mail_s_bytes_are_bound_once_through_write_claim_retry_and_sent(
        app: App, clock: FixedClock, bound: list[tuple[str, bytes]]) -> None:
    unwritten(app, 2)
    bound.clear()  # (the incoming mails' bytes)
    folder = Path(app.config.smtp.file_dir)
    retry = TransportTemporary("451 try again later")
    first = outbox.flush(app, FailingAt(folder, 1, retry))
    assert (first.sent, first.retrying) == (len(stored(app)) - 1, 1)
    clock.advance(timedelta(hours=1))
    assert outbox.flush(app).sent == 1  # the retry: read again, claimed again, sent
    rows, written = stored(app), stored_bytes(app)
    assert {r.status for r in rows.values()} == {"sent"} and set(written) == set(rows)
    for row_id, raw in written.items():
        assert rows[row_id].size == len(raw)
        statements = [s for s, value in bound if value == raw]
        assert len(statements) == 1, (row_id, statements)
        assert statements[0].upper().startswith("INSERT INTO OUTBOX_BYTES")
    # nothing else bound any bytes: the claims, the retry and "sent" never carry the mail
    assert len(bound) == len(written)


@pytest.fixture
def sqlite_app(tmp_path: Path, clock: FixedClock) -> Iterator[App]:
    """On SQLite whatever the run's databases: the WAL is SQLite's (PostgreSQL keeps an
    unchanged TOASTed value on UPDATE, so there is nothing to measure there)."""
    application = App(make_config(tmp_path, f"sqlite:///{tmp_path / 'wal.db'}"), clock=clock)
    application.ready_db()
    yield application
    application.close()


def test_a_status_change_writes_next_to_nothing_to_sqlite_s_wal(sqlite_app: App) -> None:
    app = sqlite_app
    ids = queue(app, 2)
    pad(app, ids[0], 2 * MiB)
    path = str(app.db.engine.url.database)
    wal = Path(path + "-wal")
    checkpoint = sqlite3.connect(path, isolation_level=None)  # outside any transaction
    try:
        busy, _, _ = checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        checkpoint.close()
    assert busy == 0 and wal.stat().st_size == 0
    assert outbox.flush(app).sent == len(ids)  # claimed and "sent": a 2 MiB mail among them
    # With the bytes on the row, the claim and "sent" each wrote them again (> 4 MiB).
    assert 0 < wal.stat().st_size < 256 * 1024, wal.stat().st_size


def test_a_second_store_of_the_same_mail_keeps_the_first_bytes(app: App) -> None:
    """A claim taken over mid-write: whoever stores first wins, the other sends those bytes."""
    unwritten(app, 1)
    row_id = min(stored(app))
    first = Written(row_id, b"first bytes", "subject 1", "text", None, None)
    second = Written(row_id, b"second, longer bytes", "subject 2", "text", None, None)
    assert outbox._store(app, first) == b"first bytes"
    assert outbox._store(app, second) == b"first bytes"
    with app.db.transaction() as s:
        outbox._store_many(s, app, [second])  # the Prewriter's path: skipped as well
    assert stored_bytes(app)[row_id] == b"first bytes"
    row = stored(app)[row_id]
    assert (row.size, row.subject) == (len(b"first bytes"), "subject 1")


def test_migration_0008_moves_the_bytes_out_and_back(database_url: str,
                                                     tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    cfg = dbmod._alembic_config(database)
    command.upgrade(cfg, "0007")
    count = 2 * migration_0008().CHUNK + 5  # more than two chunks
    now = datetime(2023, 10, 27, 1, 0, tzinfo=UTC)
    # every third row not written yet (a draft), the others with bytes of their own length
    raws = {n: None if n % 3 == 0 else f"mail {n} ".encode() * (n % 7 + 1)
            for n in range(1, count + 1)}
    with database.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO outbox (id, kind, message_id, sender, recipients, primary_recipient, "
            "subject, raw, automatic, status, attempts, next_attempt_at, created_at) VALUES "
            "(:id, 'acceptance', :mid, 'support@corp.example', '[\"a@corp.example\"]', "
            "'a@corp.example', 's', :raw, true, 'sent', 1, :t, :t)"),
            [{"id": n, "mid": f"m{n}@corp.example", "raw": raw, "t": now}
             for n, raw in raws.items()])
    command.upgrade(cfg, "0008")
    with database.engine.connect() as conn:
        moved = {n: bytes(raw) for n, raw in conn.execute(
            text("SELECT outbox_id, raw FROM outbox_bytes"))}
        sizes = {n: size for n, size in conn.execute(text("SELECT id, size FROM outbox"))}
    assert moved == {n: raw for n, raw in raws.items() if raw is not None}
    assert sizes == {n: None if raw is None else len(raw) for n, raw in raws.items()}
    command.downgrade(cfg, "0007")
    with database.engine.connect() as conn:
        back = {n: None if raw is None else bytes(raw) for n, raw in conn.execute(
            text("SELECT id, raw FROM outbox"))}
    assert back == raws
    assert "outbox_bytes" not in inspect(database.engine).get_table_names()
    assert "size" not in {c["name"] for c in inspect(database.engine).get_columns("outbox")}
    database.dispose()


def test_the_row_s_size_is_what_the_claim_budgets_with(app: App) -> None:
    ids = queue(app, 3)
    padded = pad(app, ids[1], MiB)
    claims = {c.id: c for c in outbox._claim(app, "test-worker", 10)}
    assert claims[ids[1]].size == len(padded) == MiB
    written = stored_bytes(app)
    assert all(claims[i].size == len(written[i]) for i in ids)
    with app.db.transaction() as s:  # the claim took the rows without reading their bytes
        assert set(s.scalars(select(OutboxMail.status))) == {"sending"}


def test_resend_by_id_sends_the_stored_bytes_again_and_writes_an_unwritten_one_anew(
        app: App, clock: FixedClock) -> None:
    """``ticketd outbox resend ID``: a sent mail goes again as it was stored (same bytes, same
    Message-ID, nothing stored twice); one that failed before it was written is written now."""
    unwritten(app, 2)
    ids = sorted(stored(app))
    with app.db.transaction() as s:  # the second cannot be written (its draft is broken)
        row = s.get(OutboxMail, ids[1])
        assert row is not None and row.variables is not None
        broken = dict(row.variables)
        row.variables = {k: v for k, v in broken.items() if k != "number"}
    report = outbox.flush(app)
    assert (report.sent, report.failed) == (len(ids) - 1, 1)
    first = stored_bytes(app)
    assert ids[1] not in first and stored(app)[ids[1]].status == "failed"
    with app.db.transaction() as s:  # fixed (as a template fix would), then resent by id
        row = s.get(OutboxMail, ids[1])
        assert row is not None
        row.variables = broken
    folder = Path(app.config.smtp.file_dir)
    shutil.rmtree(folder)
    clock.advance(timedelta(minutes=1))
    assert [resend.requeue(app, i).action for i in ids[:2]] == ["requeued", "requeued"]
    assert outbox.flush(app).sent == 2
    again = stored_bytes(app)
    assert again[ids[0]] == first[ids[0]]  # untouched: the same bytes went again
    rows = stored(app)
    assert rows[ids[1]].size == len(again[ids[1]])  # written now, stored once
    assert delivered(app) == {rows[i].message_id: again[i] for i in ids[:2]}
    assert first[ids[0]].count(f"Message-ID: <{rows[ids[0]].message_id}>".encode()) == 1
