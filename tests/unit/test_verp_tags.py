"""VERP tags (daemon/verp.py): only the row's key makes them, any change breaks them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon import verp
from daemon.config import from_mapping
from daemon.errors import ConfigError

KEY = "00112233445566778899aabbccddeeff"
RECIPIENTS = ["li@corp.example", "wang@corp.example"]
OURS = frozenset({"support@corp.example"})


def test_a_tag_verifies_for_the_recipient_it_was_made_for() -> None:
    tag = verp.make_tag(42, 1, "Wang@Corp.Example", KEY)
    parsed = verp.parse(tag)
    assert parsed == verp.Tag(42, 1, tag.rsplit("-", 1)[1])
    assert verp.verify(parsed, KEY, RECIPIENTS) == "wang@corp.example"


def test_an_mta_that_folds_case_changes_nothing() -> None:
    tag = verp.make_tag(7, 0, "li@corp.example", KEY)
    parsed = verp.parse(tag.upper())
    assert parsed is not None
    assert verp.verify(parsed, KEY, RECIPIENTS) == "li@corp.example"


@pytest.mark.parametrize("change", ["mac", "index", "id", "key", "recipients"])
def test_a_tampered_or_foreign_tag_proves_nothing(change: str) -> None:
    tag = verp.parse(verp.make_tag(42, 0, "li@corp.example", KEY))
    assert tag is not None
    key, recipients = KEY, list(RECIPIENTS)
    if change == "mac":
        flipped = ("b" if tag.mac[0] == "a" else "a") + tag.mac[1:]
        tag = verp.Tag(tag.outbox_id, tag.index, flipped)
    elif change == "index":  # the requester's tag turned into the colleague's
        tag = verp.Tag(tag.outbox_id, 1, tag.mac)
    elif change == "id":  # the same tag on another mail
        tag = verp.Tag(43, tag.index, tag.mac)
    elif change == "key":  # another row's key
        key = "ff" * 16
    else:  # the row went to somebody else
        recipients = ["victim@corp.example", *RECIPIENTS[1:]]
    assert verp.verify(tag, key, recipients) is None


def test_no_key_or_an_index_past_the_recipients_proves_nothing() -> None:
    tag = verp.parse(verp.make_tag(42, 5, "x@corp.example", KEY))
    assert tag is not None
    assert verp.verify(tag, KEY, RECIPIENTS) is None
    tag0 = verp.parse(verp.make_tag(42, 0, "li@corp.example", KEY))
    assert tag0 is not None
    assert verp.verify(tag0, None, RECIPIENTS) is None


@pytest.mark.parametrize("text", ["", "abc", "1-0-short", "1-0-" + "1" * 20, "x" * 60,
                                  "1-0-" + "a" * 21, "-0-" + "a" * 20])
def test_anything_else_after_the_plus_is_no_tag(text: str) -> None:
    assert verp.parse(text) is None


def test_the_address_keeps_the_support_address_and_fits_rfc_5321() -> None:
    tag = verp.make_tag(2**64 - 1, 36**2 - 1, "li@corp.example", KEY)
    assert len(tag) == verp.MAX_TAG
    address = verp.address("support@corp.example", tag)
    assert address == f"support+{tag}@corp.example"
    assert len(address.partition("@")[0]) <= 64
    assert verp.room_for_tag("a" * 26 + "@corp.example")
    assert not verp.room_for_tag("a" * 27 + "@corp.example")
    with pytest.raises(ValueError, match="longer than 64"):
        verp.address("a" * 40 + "@corp.example", tag)


def test_tag_in_reads_only_our_own_tagged_mailboxes() -> None:
    assert verp.tag_in("<Support+1-0-abc@Corp.Example>", OURS) == "1-0-abc"
    assert verp.tag_in("support@corp.example", OURS) is None
    assert verp.tag_in("support+1-0-abc@other.example", OURS) is None
    assert verp.tag_in("someone+1-0-abc@corp.example", OURS) is None
    # a support address with a '+' of its own: the tag is what follows the last one
    assert verp.tag_in("help+desk+9-0-xyz@corp.example",
                       frozenset({"help@corp.example"})) == "9-0-xyz"


@given(st.integers(0, 2**63), st.integers(0, 36**2 - 1), st.emails())
def test_every_tag_round_trips_and_only_for_its_recipient(outbox_id: int, index: int,
                                                          recipient: str) -> None:
    tag = verp.make_tag(outbox_id, index, recipient, KEY)
    parsed = verp.parse(tag)
    assert parsed is not None and (parsed.outbox_id, parsed.index) == (outbox_id, index)
    recipients = ["other@corp.example"] * index + [recipient]
    assert verp.verify(parsed, KEY, recipients) == recipient.lower()
    assert verp.verify(parsed, KEY, ["other@corp.example"] * (index + 1)) is None


def test_config_refuses_verp_when_the_local_part_leaves_no_room(tmp_path: Path) -> None:
    long_local = "customer-support-department" + "@corp.example"
    with pytest.raises(ConfigError) as err:
        from_mapping({"support": {"address": long_local}, "mail": {"verp": True}},
                     where="t.toml", base=tmp_path)
    assert str(err.value) == (
        "t.toml: [mail] verp: the local part of [support] address is 27 characters; VERP "
        "adds 38 and RFC 5321 allows 64, so expected at most 26")
    cfg = from_mapping({"support": {"address": long_local}}, where="t.toml", base=tmp_path)
    assert cfg.mail.verp is False


def test_config_verp_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[mail\] verp"):
        from_mapping({"mail": {"verp": "yes"}}, where="t.toml", base=tmp_path)


def test_our_own_mailboxes_include_every_plus_address(tmp_path: Path) -> None:
    cfg = from_mapping({"support": {"address": "support@corp.example",
                                    "aliases": ["help@corp.example"]}},
                       where="t.toml", base=tmp_path)
    assert cfg.is_own("Support+1-0-abc@corp.example")
    assert cfg.is_own("help+x@corp.example")
    assert not cfg.is_own("supporter@corp.example")
    assert not cfg.is_own("support@corp.example.evil")
