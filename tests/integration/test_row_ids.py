"""Row ids handed out before the flush (daemon.row_ids), on SQLite and PostgreSQL: new rows
of one table go in one executemany, their ids follow the order they were added, a row given
its id early (hand_out) keeps it, and rows inserted any other way in the same transaction, or
(PostgreSQL) by another transaction meanwhile, never collide with them."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import event, insert, select

from daemon import row_ids
from daemon.app import App
from daemon.models import IntakeRecord


def record(app: App, key: str) -> IntakeRecord:
    return IntakeRecord(dedup_key=key, raw_sha256="0" * 64, action="created", at=app.clock.now())


def test_new_rows_are_numbered_in_order_and_written_in_one_statement(app: App) -> None:
    seen: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen[" ".join(statement.split()[:3])] += 1

    event.listen(app.db.engine, "before_cursor_execute", count)
    with app.db.transaction() as s:
        first = [record(app, f"a{n}") for n in range(3)]
        s.add_all(first)
        s.flush()
        assert seen["INSERT INTO intake_log"] == 1   # three rows, one statement
        # a row written another way in the same transaction (Core, the database's own id)
        s.execute(insert(IntakeRecord).values(dedup_key="core", raw_sha256="0" * 64,
                                              action="created", at=app.clock.now()))
        early, later = record(app, "early"), record(app, "later")
        s.add(early)
        row_ids.hand_out(s, [early])       # an id now, nothing written
        with s.no_autoflush:
            assert early.id is not None and s.scalar(
                select(IntakeRecord.id).where(IntakeRecord.dedup_key == "early")) is None
        s.add(later)
        s.flush()
    event.remove(app.db.engine, "before_cursor_execute", count)
    with app.db.transaction() as s:
        order = list(s.scalars(select(IntakeRecord.dedup_key).order_by(IntakeRecord.id)))
    assert order == ["a0", "a1", "a2", "core", "early", "later"]


def test_another_transaction_meanwhile_takes_other_ids(app: App) -> None:
    if app.db.is_sqlite:   # one writer at a time: nobody can insert meanwhile
        with app.db.transaction() as s:
            s.add_all([record(app, "x0"), record(app, "x1")])
        return
    with app.db.transaction() as one, app.db.transaction() as two:
        mine = [record(app, f"one{n}") for n in range(3)]
        theirs = [record(app, f"two{n}") for n in range(3)]
        one.add_all(mine)
        two.add_all(theirs)
        row_ids.hand_out(one, mine)
        two.flush()
        one.flush()
    assert not {r.id for r in mine} & {r.id for r in theirs}
    with app.db.transaction() as s:
        assert len(list(s.scalars(select(IntakeRecord.id)))) == 6
