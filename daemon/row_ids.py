"""Row ids handed out before a flush, so the ORM writes a table's new rows in one executemany.

Without an id, the unit of work INSERTs each new row alone and reads its id back
(``INSERT ... RETURNING id``): a statement, and on PostgreSQL a round trip, per row. When every
new row of a table already has its id, the same rows go in one ``executemany``. Intake writes a
batch's tickets, messages, outgoing mail and log records in a few flushes, so this is most of
what a flush costs.

Where the ids come from, by database:

* **SQLite**: the table's largest id plus one, and on. A transaction that writes holds the
  database's one write lock (``BEGIN IMMEDIATE``, :mod:`daemon.db`), so nobody else can insert
  between the question and the INSERT; asked again at every flush, so rows inserted any other
  way in the same transaction are counted too. It is the id SQLite itself would give (a table
  without ``AUTOINCREMENT``).
* **PostgreSQL**: ``nextval`` of the column's own sequence, once per row in one query, so
  several instances writing at once never take the same id (a rolled-back id is a gap, as with
  any sequence).

Only tables with a single integer primary key the database generates, and only when a flush
has at least two new rows for that table (one row gains nothing from an executemany).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Column, Engine, Integer, Table, event, func, inspect, select, text
from sqlalchemy.orm import Mapper, Session, UOWTransaction

_SEQUENCE_OF = text("SELECT pg_get_serial_sequence(:table, :column)")
_NEXT_IDS = text("SELECT nextval(CAST(:sequence AS regclass)) FROM generate_series(1, :n)")
_KEY_COLUMNS: dict[Mapper[Any], Column[Any] | None] = {}
# per engine (a test's throwaway schema has sequences of its own): table.column -> sequence
_SEQUENCES: WeakKeyDictionary[Engine, dict[str, str]] = WeakKeyDictionary()


def generated_key(mapper: Mapper[Any]) -> Column[Any] | None:
    """The mapper's primary key column when it is one integer column the database numbers."""
    if mapper in _KEY_COLUMNS:
        return _KEY_COLUMNS[mapper]
    column: Column[Any] | None = None
    table = mapper.local_table
    if isinstance(table, Table) and len(mapper.primary_key) == 1:
        key = mapper.primary_key[0]
        if isinstance(key, Column) and isinstance(key.type, Integer) and \
                table.autoincrement_column is key:
            column = key
    _KEY_COLUMNS[mapper] = column
    return column


@event.listens_for(Session, "before_flush")
def _hand_out(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    wanting: dict[Mapper[Any], list[Any]] = {}
    for obj in session.new:
        state = inspect(obj)
        if _unnumbered(state):
            wanting.setdefault(state.mapper, []).append(state)
    for mapper, states in wanting.items():
        # One row alone is numbered by the database, unless ids were handed out for its table
        # in this transaction and not all written yet: on SQLite the database would give it
        # the first of those.
        table = mapper.local_table
        if len(states) >= 2 or (isinstance(table, Table) and table.name in _handed(session)):
            _give(session, mapper, states)


def hand_out(session: Session, objects: Sequence[object]) -> None:
    """Give ``objects`` (new, not written yet) their ids now, without writing anything: a
    caller that needs an id before the flush (an outgoing mail naming attachments). Every
    other new row of their tables is numbered with them, so ids still follow the order in
    which rows were added."""
    classes = {type(obj) for obj in objects}
    by_mapper: dict[Mapper[Any], list[Any]] = {}
    for obj in session.new:
        if type(obj) in classes and _unnumbered(state := inspect(obj)):
            by_mapper.setdefault(state.mapper, []).append(state)
    for mapper, states in by_mapper.items():
        _give(session, mapper, states)


def _unnumbered(state: Any) -> bool:
    column = generated_key(state.mapper)
    return column is not None and state.dict.get(
        state.mapper.get_property_by_column(column).key) is None


def _give(session: Session, mapper: Mapper[Any], states: list[Any]) -> None:
    column = generated_key(mapper)
    if column is None:
        raise ValueError(f"{mapper.class_.__name__}: no database-numbered key to hand out")
    states.sort(key=lambda s: s.insert_order)  # ids in the order the rows were added
    attribute = mapper.get_property_by_column(column).key
    for state, row_id in zip(states, next_ids(session, column, len(states)), strict=True):
        setattr(state.obj(), attribute, row_id)


_HANDED = "ticketd.row_ids"


def _handed(session: Session) -> dict[str, int]:
    """SQLite: the largest id handed out per table in the session's transaction."""
    transaction = session.get_transaction()
    kept: tuple[object, dict[str, int]] | None = session.info.get(_HANDED)
    if kept is None or kept[0] is not transaction:
        kept = (transaction, {})
        session.info[_HANDED] = kept
    return kept[1]


@event.listens_for(Session, "after_soft_rollback")
def _forget_handed(session: Session, _previous: Any) -> None:
    """What was rolled back took its rows and their ids with it (a savepoint's start wrote
    everything before it), so the table's largest id is right again."""
    session.info.pop(_HANDED, None)


def next_ids(session: Session, column: Column[Any], n: int) -> list[int]:
    """``n`` unused ids for ``column``, ascending, in the session's transaction."""
    connection = session.connection()
    table = column.table
    assert isinstance(table, Table)
    if connection.dialect.name == "postgresql":
        known = _SEQUENCES.setdefault(connection.engine, {})
        sequence = known.get(f"{table.name}.{column.name}")
        if sequence is None:
            sequence = connection.execute(_SEQUENCE_OF, {"table": table.name,
                                                         "column": column.name}).scalar_one()
            known[f"{table.name}.{column.name}"] = sequence
        return sorted(connection.execute(_NEXT_IDS, {"sequence": sequence, "n": n}).scalars())
    # Ids handed out in this transaction and not written yet are above the table's largest.
    handed = _handed(session)
    largest = max(connection.execute(select(func.max(column))).scalar() or 0,
                  handed.get(table.name, 0))
    handed[table.name] = largest + n
    return list(range(largest + 1, largest + 1 + n))
