"""The new-ticket budget counts by the stored normalised mailbox and domain (migration 0007):
the same tickets the ``= local@domain OR LIKE local+%@domain`` predicate counted, found through
an index instead of a scan of the last hour's tickets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from sqlalchemy import func, select, text

from daemon import db as dbmod
from daemon import tickets
from daemon.intake import budget
from daemon.models import Ticket

NOW = datetime(2023, 10, 27, 12, 0, tzinfo=UTC)
# (stored requester_email, its mailbox, its domain)
ADDRESSES = [("li@corp.example", "li@corp.example", "corp.example"),
             ("li+vpn@corp.example", "li@corp.example", "corp.example"),
             ("li+a+b@corp.example", "li@corp.example", "corp.example"),
             ("li+@corp.example", "li@corp.example", "corp.example"),
             ("lily@corp.example", "lily@corp.example", "corp.example"),
             ("li@sub.corp.example", "li@sub.corp.example", "sub.corp.example"),
             ("wang@other.example", "wang@other.example", "other.example"),
             ("no-at-sign", "no-at-sign", "")]


def test_0007_fills_the_mailbox_and_domain_of_existing_tickets(database_url: str,
                                                               tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    command.upgrade(dbmod._alembic_config(database), "0006")
    with database.engine.begin() as conn:
        for n, (email, _, _) in enumerate(ADDRESSES):
            conn.execute(text(
                "INSERT INTO tickets (number, subject, status, priority, requester_name, "
                "requester_email, cc, fields, language, created_at, updated_at, co_handlers) "
                "VALUES (:number, 's', 'new', 'P2', '', :email, '[]', '{}', 'en', :t, :t, "
                "'[]')"), {"number": f"TS2023102700000{n}", "email": email, "t": NOW})
    dbmod.upgrade(database)
    with database.engine.connect() as conn:
        stored = conn.execute(text("SELECT requester_email, requester_mailbox, "
                                   "requester_domain FROM tickets ORDER BY id")).all()
    assert [tuple(row) for row in stored] == ADDRESSES
    database.dispose()


def test_the_count_is_the_predicate_count_and_new_tickets_carry_their_mailbox(
        database_url: str, tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    dbmod.upgrade(database)
    with database.transaction() as session:
        for n, (email, _, _) in enumerate(ADDRESSES):
            ticket = tickets.create(session, number=f"TS2023102700000{n}", subject="s",
                                    requester_name="", requester_email=email.upper(),
                                    at=NOW - timedelta(minutes=n))
            session.flush()
            assert (ticket.requester_mailbox, ticket.requester_domain) == (
                ADDRESSES[n][1], ADDRESSES[n][2])
        emails = [e for e, _, _ in ADDRESSES]
        for mailbox in {m for _, m, _ in ADDRESSES}:
            expected = sum(budget.same_mailbox(e, mailbox) for e in emails)
            assert session.scalar(select(func.count()).select_from(Ticket).where(
                budget.same_mailbox_clause(mailbox))) == expected, mailbox
            over = budget.counted_over_budget(session, mailbox, NOW, expected, 0)
            assert over is not None and over.count == expected
            assert budget.counted_over_budget(session, mailbox, NOW, expected + 1, 0) is None
        for domain in {d for _, _, d in ADDRESSES if d}:
            expected = sum(budget.in_domain(e, domain) for e in emails)
            over = budget.counted_over_budget(session, f"x@{domain}", NOW, 0, expected)
            assert over is not None and over.count == expected, domain
    database.dispose()


def test_sqlite_finds_a_batch_of_senders_through_the_index(tmp_path: Path) -> None:
    database = dbmod.connect(f"sqlite:///{tmp_path / 'plan.db'}", tmp_path)
    dbmod.upgrade(database)
    query = select(Ticket.requester_email, Ticket.created_at).where(
        Ticket.created_at > NOW, Ticket.requester_mailbox.in_(["a@x", "b@y"])
        | Ticket.requester_domain.in_(["x"]))
    with database.engine.connect() as conn:
        compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
        plan = " ".join(str(row) for row in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}"))
    assert "ix_tickets_mailbox_created" in plan and "ix_tickets_domain_created" in plan, plan
    database.dispose()
