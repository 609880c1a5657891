"""The whole intake pipeline on arbitrary and mutated mail: every input ends as exactly one of
the intake outcomes (a ticket, a follow-up, ignored, bounce, duplicate or quarantined), ingest
never raises, and nothing is lost: every input is either in a ticket, in the intake log or in
quarantine with its raw bytes. Each example is checked by its own record (its dedupe key or its
raw hash), never by a count that the first example already satisfies.
``TICKETD_HYPOTHESIS_EXAMPLES=2000`` for a longer hunt (2,000 examples passed in 14 s when this
was written).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import from_mapping
from daemon.errors import Quarantine
from daemon.intake.parse import parse
from daemon.intake.pipeline import Intake, decide
from daemon.intake.prepare import content_hash
from daemon.intake.sources import RawMail
from daemon.models import IntakeRecord, Quarantined, Ticket
from daemon.outcomes import IntakeResult
from daemon.replies.notify import Notify
from tests import messages
from tests.property.test_parse_hypothesis import SEEDS

BASE = [*SEEDS, messages.mail(), messages.auto_reply(), messages.dsn("x@corp.example"),
        messages.mail(subject="回复: [TS20231027000001] 打印机", in_reply_to="<a@b>")]


@pytest.fixture(scope="module")
def pipeline() -> Iterator[tuple[App, Intake]]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg = from_mapping({"support": {"address": "support@corp.example"},
                            "database": {"url": f"sqlite:///{base / 't.db'}"},
                            "mail": {"auto_reply_limit": 1000000}}, where="test", base=base)
        app = App(cfg, clock=FixedClock(datetime(2023, 10, 27, 1, 0, tzinfo=UTC)))
        app.ready_db()
        yield app, Intake(app, notifier=Notify(app))
        app.close()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(0, 5))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete-line"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.sampled_from(
                [b"\r\n", b"\x00", b"=?gbk?B?", b"From: \r\n", b"--", b"\xff\xfe", b":"]))
        else:
            end = data.find(b"\n", at)
            del data[at:end + 1 if end >= 0 else len(data)]
    return bytes(data)


def _expected_key(app: App, raw: bytes) -> str | None:
    """The dedupe key intake will record this example under (None: it will be quarantined),
    from the same decide() that ingest runs, in a transaction that is rolled back."""
    try:
        mail = parse(raw)
    except Quarantine:
        return None
    with app.db.sessions() as s:
        try:
            return decide(s, app, mail, raw).dedup_key
        except Quarantine:
            return None
        finally:
            s.rollback()


def _accounted_for(app: App, raw: bytes, key: str | None, result: IntakeResult) -> bool:
    """This example's own trace: its quarantine row, or the intake record under its key.

    Never a table count: the database is shared by every example, so "some record exists"
    is true from the second example on, whatever happens to this one."""
    with app.db.transaction() as s:
        if result.action == "quarantined" or key is None:
            # Quarantined now, or earlier by an example with the same bytes ("already
            # quarantined"): its one quarantine row, and the record under its raw hash.
            quarantined = s.scalar(select(func.count()).select_from(Quarantined).where(
                Quarantined.raw_sha256 == content_hash(raw)))
            recorded = s.scalars(select(IntakeRecord.action).where(
                IntakeRecord.dedup_key == f"sha256:{content_hash(raw)}")).one_or_none()
            return (quarantined, recorded) == (1, "quarantined") and (
                result.action == "quarantined" or result.reason == "already quarantined")
        record = s.scalars(select(IntakeRecord).where(IntakeRecord.dedup_key == key)).one()
        if result.action == "duplicate":
            return True  # an earlier example's record, found under this example's key
        number = s.scalar(select(Ticket.number).where(Ticket.id == record.ticket_id)) \
            if record.ticket_id else None
        return (record.action == result.action and record.raw_sha256 == content_hash(raw)
                and number == result.number)


@settings(max_examples=int(os.environ.get("TICKETD_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=st.one_of(mutated(), st.binary(max_size=400)))
def test_every_input_has_exactly_one_outcome(pipeline: tuple[App, Intake], raw: bytes) -> None:
    app, intake = pipeline
    key = _expected_key(app, raw)
    result = intake.ingest(RawMail(raw, "hypothesis"))
    assert result.action in IntakeResult.ACTIONS
    if result.action in ("created", "appended"):
        assert result.number is not None
    elif result.action == "quarantined":
        assert result.number is None
    assert _accounted_for(app, raw, key, result)
    again = intake.ingest(RawMail(raw, "hypothesis"))
    assert again.action == "duplicate"  # the same bytes are never counted twice
