"""The stored bytes of claimed outbox mails, read a group at a time within a byte budget.

Why: the flush used to read each mail's bytes in its own transaction just before sending it,
a transaction per mail on a backlog; reading a whole claimed batch at once would hold a batch
of mails with 25 MB attachments in memory. :class:`ReadAhead` is given the claimed mails in
the order they will be sent, with the size of their bytes as the claim saw it, and when a mail
is asked for that is not read yet it reads it and the mails after it in one statement, as many
as fit in ``budget`` bytes. A mail larger than the budget is read alone, and so is a mail whose
size the claim did not know (it had no bytes then). Each mail's bytes are handed out once and
dropped: what is held at any time is at most one group.

Only reading happens here, of ``outbox_bytes`` (the bytes live apart from the outbox row, whose
status changes must not rewrite them): the rows are the caller's (claimed ``sending``), so
their bytes do not change under it (they are inserted once, ``outbox.size IS NULL`` guards
every write).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Table, bindparam, select

from daemon.models import OutboxBytes

__all__ = ["RAW_BUDGET", "ReadAhead"]

RAW_BUDGET = 4 * 1024 * 1024  # bytes of mail read ahead at most (a bigger mail alone)
GROUP_MAX = 200               # mails per statement at most (bound parameters stay few)

_BYTES: Table = OutboxBytes.metadata.tables[OutboxBytes.__tablename__]
_READ = select(_BYTES.c.outbox_id, _BYTES.c.raw).where(
    _BYTES.c.outbox_id.in_(bindparam("ids", expanding=True)))


class ReadAhead:
    """Hands out claimed mails' stored bytes, read in groups of at most ``budget`` bytes.

    ``sizes``: (row id, byte size or None when unknown), in the order the mails are taken.
    Each read is its own short transaction on ``conn`` (on SQLite every transaction takes the
    write lock: none is left open while the mail is sent).
    """

    def __init__(self, conn: Connection, sizes: Iterable[tuple[int, int | None]],
                 budget: int = RAW_BUDGET) -> None:
        self._conn = conn
        self._budget = budget
        self._unread: dict[int, int | None] = dict(sizes)  # insertion order: send order
        self._held: dict[int, bytes | None] = {}
        self.reads = 0  # statements issued so far

    def take(self, row_id: int) -> bytes | None:
        """The bytes of ``row_id`` (None: it has none, or is not one of the mails given)."""
        if row_id in self._unread:
            self._read(self._group(row_id))
        return self._held.pop(row_id, None)

    def _group(self, row_id: int) -> list[int]:
        """``row_id`` and the unread mails after it that fit in the budget with it."""
        first = self._unread.pop(row_id)
        group = [row_id]
        if first is None:
            return group
        total = first
        for other, size in self._unread.items():
            if size is None or total + size > self._budget or len(group) >= GROUP_MAX:
                break
            group.append(other)
            total += size
        for other in group[1:]:
            del self._unread[other]
        return group

    def _read(self, group: list[int]) -> None:
        with self._conn.begin():
            found = {row.outbox_id: row.raw
                     for row in self._conn.execute(_READ, {"ids": group})}
        self.reads += 1
        for row_id in group:
            raw = found.get(row_id)
            self._held[row_id] = None if raw is None else bytes(raw)
