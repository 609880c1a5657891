"""The mail kinds: exactly the variables each template receives, and their sample data."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

from daemon.errors import NotFound
from daemon.intake.parsed import Address
from daemon.replies import kinds
from daemon.replies.kinds import KINDS, MailKind, context_of, sample, variables_of

COMMON = {"number", "subject", "support_name", "support_address", "locale"}
ALL_KINDS = sorted(KINDS)


def test_the_ten_kinds() -> None:
    assert set(KINDS) == {
        "acceptance", "need_info", "assigned", "reply",
        "resolution", "reopened", "closed", "sla_breach", "update", "command_result",
    }
    for name, cls in KINDS.items():
        assert cls.kind == name
        assert issubclass(cls, MailKind)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_is_frozen_and_has_the_common_fields(kind: str) -> None:
    cls = KINDS[kind]
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert variables_of(kind) >= COMMON
    obj = sample(kind, "en")
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.number = "TS1"  # type: ignore[misc]


def test_variables_of_is_exactly_the_fields() -> None:
    assert variables_of("reply") == COMMON | {"requester_name", "handler_name", "text"}
    assert variables_of("sla_breach") == COMMON | {
        "lead_name", "priority", "team", "deadline", "late_by", "handler_name", "reason",
    }
    assert variables_of("assigned") >= {"requester", "fields", "attachments", "deadline"}


def test_every_field_is_documented_by_a_comment() -> None:
    source = inspect.getsource(kinds)
    for cls in [*KINDS.values(), MailKind, kinds.MissingDetail, kinds.AttachmentInfo]:
        for f in dataclasses.fields(cls):
            pattern = rf"^\s+{f.name}: [^\n]*#\s*\S"
            assert re.search(pattern, source, re.MULTILINE), f"{cls.__name__}.{f.name}"


def test_unknown_kind_is_not_found() -> None:
    with pytest.raises(NotFound, match="acceptance"):
        variables_of("acceptence")
    with pytest.raises(NotFound):
        sample("nope", "en")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_samples_are_localised(kind: str) -> None:
    zh = sample(kind, "zh-CN")
    en = sample(kind, "en")
    assert isinstance(zh, KINDS[kind])
    assert zh.locale == "zh-CN"
    assert en.locale == "en"
    assert re.search(r"[\u4e00-\u9fff]", zh.subject)
    assert en.subject.isascii()
    assert re.fullmatch(r"TS\d{14}", zh.number)
    assert sample(kind, "zh_CN") == zh


def test_sample_deadlines_are_aware() -> None:
    acceptance = sample("acceptance", "zh-CN")
    assert isinstance(acceptance, kinds.Acceptance)
    assert acceptance.assign_by.tzinfo is not None
    assert acceptance.priority in {"P0", "P1", "P2", "P3"}


def test_context_of_is_shallow() -> None:
    obj = sample("assigned", "zh-CN")
    context = context_of(obj)
    assert set(context) == variables_of("assigned")
    assert isinstance(context["requester"], Address)
    attachments = context["attachments"]
    assert isinstance(attachments, tuple)
    assert isinstance(attachments[0], kinds.AttachmentInfo)
    assert context["number"] == obj.number


def test_context_of_rejects_non_kinds() -> None:
    with pytest.raises(TypeError):
        context_of({"number": "TS1"})
    with pytest.raises(TypeError):
        context_of(kinds.Reply)
