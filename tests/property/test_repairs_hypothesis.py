"""The repair steps of intake on arbitrary input: they return or raise only what they promise.

Sender salvage, header-block repair, the CP50221 decoder, the plausibility score and the
corpus mails of ``tests/realmail`` with bytes changed: parse() still returns a mail or raises
Quarantine, and a salvaged address is always ``local@domain`` or a bare mail-system name.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.errors import Quarantine
from daemon.intake.headerblock import repair_header_block
from daemon.intake.iso2022jp import decode as decode_cp50221
from daemon.intake.parse import parse
from daemon.intake.plausibility import score
from daemon.intake.senders import MAIL_SYSTEM_NAMES, salvage, salvage_system_sender

CORPUS = sorted((Path(__file__).parent.parent / "realmail" / "mail").glob("*.eml"))
ADDRESSY = st.lists(st.sampled_from([*'ab. @<>"()[],;:\'\t-_1张', "mailto:", "MAILER-DAEMON"]),
                    max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(ADDRESSY)
def test_salvage_returns_a_plausible_mailbox_or_none(item: str) -> None:
    for found in (salvage(item), salvage_system_sender(item, "mx.example")):
        if found is None:
            continue
        local, at, domain = found.email.rpartition("@")
        assert (at and local and domain) or found.email in MAIL_SYSTEM_NAMES
        assert found.repair


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_header_block_repair_keeps_the_body_bytes(raw: bytes) -> None:
    repaired, repairs = repair_header_block(raw)
    if not repairs:
        assert repaired == raw
    else:
        assert all(r.startswith("header block: ") for r in repairs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_cp50221_decodes_or_raises_unicode_decode_error(data: bytes) -> None:
    with contextlib.suppress(UnicodeDecodeError):
        assert isinstance(decode_cp50221(b"\x1b$B" + data), str)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_plausibility_scores_any_text(text: str) -> None:
    assert isinstance(score(text), float)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CORPUS), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)),
                                         max_size=5))
def test_corpus_mails_with_bytes_changed_still_parse_or_quarantine(
        path: Path, changes: list[tuple[int, int]]) -> None:
    data = bytearray(path.read_bytes())
    for offset, value in changes:
        if data:
            data[offset % len(data)] = value
    with contextlib.suppress(Quarantine):
        parse(bytes(data))
