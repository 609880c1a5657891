"""The kinds of mail ticketd sends, each a frozen dataclass of exactly its template's variables.

A template for kind ``K`` receives the fields of ``KINDS[K]`` as top-level variables and nothing
else, so `templates check` can tell an admin which names a template may use, and the workflow
cannot forget to fill one in (the dataclass will not construct without it). Nested values
(:class:`~daemon.intake.parsed.Address`, :class:`MissingDetail`, :class:`AttachmentInfo`) stay
objects, so a template writes ``{{ requester.name }}``.

``sample(kind, locale)`` builds realistic data for `templates preview` and `templates check`,
which need no database.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, ClassVar

from daemon.addresses import Address
from daemon.errors import NotFound


@dataclass(frozen=True)
class MissingDetail:
    """One detail the requester still has to give (need_info mail)."""

    label: str  # the field's name as the requester should write it, e.g. "影响范围" / "Impact"
    hint: str  # what to write, e.g. "受影响的人数或部门" / "how many people or which teams"


@dataclass(frozen=True)
class AttachmentInfo:
    """One attachment of the requester's mail, as listed to the handler."""

    filename: str  # the (sanitised) file name
    size: int  # size in bytes; format with the `filesize` filter
    content_type: str  # lower-case "type/subtype", e.g. "image/png"


@dataclass(frozen=True)
class CommandOutcome:
    """One command of a handler's mail and what became of it (command_result mail)."""

    command: str  # the command line as written, e.g. "#priority P1"
    applied: bool  # True: done; False: refused (and then no command of the mail was applied)
    message: str  # what it did, or why it was refused


# What a mail may quote of what others wrote (the incoming subject, names, a requester's or a
# handler's text): an outgoing mail never amplifies a hostile incoming one. A 10 MB Subject
# becomes 200 characters in the acceptance; a 50 MB body an excerpt in the handler's mail.
SUBJECT_CHARS = 200
NAME_CHARS = 100
TEXT_CHARS = 8000          # any other text value: the excerpt of a body, a reason
ITEMS = 50                 # entries of a tuple or mapping (details, attachments, results)
CLIPPED = " […]"
_NAMES = frozenset({"requester_name", "handler_name", "lead_name", "support_name",
                    "assigned_by", "reopened_by"})


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked with `` […]``."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(CLIPPED))].rstrip() + CLIPPED


def _clipped(value: object, limit: int) -> object:
    """A kind's value with every text in it clipped (nested value objects included)."""
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, Address):
        return Address(clip(value.name, NAME_CHARS), value.email)
    if isinstance(value, tuple):
        return tuple(_clipped(v, limit) for v in value[:ITEMS])
    if isinstance(value, Mapping):
        return {clip(str(k), NAME_CHARS): _clipped(v, limit)
                for k, v in list(value.items())[:ITEMS]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{
            f.name: _clipped(getattr(value, f.name), limit)
            for f in dataclasses.fields(value) if isinstance(getattr(value, f.name), str)})
    return value


@dataclass(frozen=True, kw_only=True)
class MailKind:
    """Fields every mail receives.

    Every text value is clipped on construction (:data:`SUBJECT_CHARS`, :data:`NAME_CHARS`,
    :data:`TEXT_CHARS`, :data:`ITEMS`), whichever code builds the kind (notify, drafts, resend).
    """

    kind: ClassVar[str] = ""  # the kind's name: the template files' stem

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            limit = SUBJECT_CHARS if f.name == "subject" else \
                NAME_CHARS if f.name in _NAMES else TEXT_CHARS
            clipped = _clipped(value, limit)
            if clipped is not value and clipped != value:
                object.__setattr__(self, f.name, clipped)

    number: str  # ticket number, e.g. "TS20231027000001"; every subject carries it
    subject: str  # the ticket's title (the requester's original subject, cleaned)
    support_name: str  # display name of the support desk, e.g. "IT 服务台"
    support_address: str  # the support mailbox requesters write to
    locale: str  # the language the mail is written in: "zh-CN" or "en"


@dataclass(frozen=True, kw_only=True)
class Acceptance(MailKind):
    """受理: to the requester, right after a new ticket was opened."""

    kind: ClassVar[str] = "acceptance"

    requester_name: str  # how to greet the requester ("" when unknown)
    priority: str  # "P0" .. "P3"
    category: str  # problem type in the reader's language, e.g. "功能异常" / "Functional issue"
    team: str  # the team's name as requesters read it, e.g. "运维组" / "Operations"
    assign_within: timedelta  # the assignment target of this priority (15 min .. 2 h)
    assign_by: datetime  # a handler is assigned by then; local time, format with `datetime`
    handler_name: str | None = None  # the handler already assigned; None: assigned later
    missing: tuple[MissingDetail, ...] = ()  # details still needed (a P0 is never held)


@dataclass(frozen=True, kw_only=True)
class NeedInfo(MailKind):
    """请补充信息: to the requester when required details are missing."""

    kind: ClassVar[str] = "need_info"

    requester_name: str  # how to greet the requester ("" when unknown)
    category: str  # problem type the missing details belong to (in the reader's language)
    missing: tuple[MissingDetail, ...]  # each missing detail: .label and .hint
    acknowledge: bool = False  # True: the first mail about a new ticket (say it was received)
    question: str = ""  # the handler's own question ("" when only fields are missing)
    reminder: bool = False  # True: the reminder after [sla] need_info_reply_hours


@dataclass(frozen=True, kw_only=True)
class Assigned(MailKind):
    """To the handler: the whole ticket, now theirs."""

    kind: ClassVar[str] = "assigned"

    handler_name: str  # how to greet the handler
    priority: str  # "P0" .. "P3"
    category: str  # problem type
    team: str  # the team the ticket is routed to
    requester: Address  # .name and .email of the requester
    fields: Mapping[str, str]  # "key: value" details the requester gave, in order
    text: str  # the requester's own words (quoted history removed)
    attachments: tuple[AttachmentInfo, ...]  # each: .filename, .size, .content_type
    deadline: datetime  # when the running SLA deadline expires; local time
    co_handlers: tuple[str, ...] = ()  # addresses copied on the ticket besides the main handler
    assigned_by: str = ""  # who assigned it ("" = automatic routing)


@dataclass(frozen=True, kw_only=True)
class Reply(MailKind):
    """A handler's public answer, relayed to the requester."""

    kind: ClassVar[str] = "reply"

    requester_name: str  # how to greet the requester ("" when unknown)
    handler_name: str  # who answered
    text: str  # the handler's answer, quoted history removed


@dataclass(frozen=True, kw_only=True)
class Resolution(MailKind):
    """处理完成: to the requester when the handler marks the ticket resolved."""

    kind: ClassVar[str] = "resolution"

    requester_name: str  # how to greet the requester ("" when unknown)
    handler_name: str  # who resolved it
    resolution: str  # what was done, in the handler's words
    reopen_days: int  # a reply within this many days reopens; afterwards it closes


@dataclass(frozen=True, kw_only=True)
class Reopened(MailKind):
    """To the handler: the requester (or a handler) reopened a resolved or closed ticket."""

    kind: ClassVar[str] = "reopened"

    handler_name: str  # how to greet the handler
    requester: Address  # .name and .email of the requester
    reopened_by: str  # who reopened it (the requester's or a handler's address)
    reason: str  # what was written when reopening ("" when nothing)


@dataclass(frozen=True, kw_only=True)
class Closed(MailKind):
    """To the requester: the ticket is closed for good."""

    kind: ClassVar[str] = "closed"

    requester_name: str  # how to greet the requester ("" when unknown)
    handler_name: str  # who resolved it
    resolution: str  # the resolution text ("" when none was given)
    auto_closed: bool  # True: closed because nobody replied within the reopen period


@dataclass(frozen=True, kw_only=True)
class SlaBreach(MailKind):
    """Escalation to a team lead: a deadline passed."""

    kind: ClassVar[str] = "sla_breach"

    lead_name: str  # how to greet the team lead
    priority: str  # "P0" .. "P3"
    team: str  # the team the ticket is routed to
    deadline: datetime  # the deadline that passed; local time
    late_by: timedelta  # how late it is now; format with `duration`
    handler_name: str | None  # the current handler; None when still unassigned
    reason: str = ""  # why a handler escalated it ("" for a missed deadline)


@dataclass(frozen=True, kw_only=True)
class Update(MailKind):
    """To the handlers: the requester wrote again (their text and attachments)."""

    kind: ClassVar[str] = "update"

    handler_name: str  # how to greet the main handler
    requester: Address  # .name and .email of the requester
    text: str  # the requester's new text (quoted history removed)
    attachments: tuple[AttachmentInfo, ...]  # the files attached to this mail
    status: str  # the ticket's status after the mail, e.g. "in_progress"


@dataclass(frozen=True, kw_only=True)
class CommandResult(MailKind):
    """To a handler: what the commands of their mail did."""

    kind: ClassVar[str] = "command_result"

    handler_name: str  # how to greet the handler
    results: tuple[CommandOutcome, ...]  # each: .command, .applied, .message
    applied: bool  # True: every command was applied; False: none was
    note_kept: bool  # True: the mail's text was kept as an internal note, not relayed


KINDS: dict[str, type[MailKind]] = {
    cls.kind: cls
    for cls in (Acceptance, NeedInfo, Assigned, Reply, Resolution, Reopened, Closed, SlaBreach,
                Update, CommandResult)
}


def kind_class(kind: str) -> type[MailKind]:
    """The dataclass of a kind; NotFound names the known kinds."""
    try:
        return KINDS[kind]
    except KeyError:
        raise NotFound(
            f"no mail kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}"
        ) from None


def variables_of(kind: str) -> frozenset[str]:
    """The names a template of this kind may use."""
    return frozenset(f.name for f in dataclasses.fields(kind_class(kind)))


def context_of(obj: object) -> dict[str, object]:
    """The template variables of a kind instance: a shallow ``asdict``.

    Shallow so nested value objects stay objects (``requester.email`` works) and tuples stay
    tuples.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"expected a mail kind instance, got {type(obj).__name__}")
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


# ---------------------------------------------------------------------------------------------
# Sample data for `templates preview` and `templates check`

_CST = timezone(timedelta(hours=8), "CST")


def sample(kind: str, locale: str) -> MailKind:
    """Realistic sample data for ``kind``: Chinese for ``zh*`` locales, English otherwise."""
    cls = kind_class(kind)
    zh = locale.lower().replace("_", "-").startswith("zh")
    values = _ZH if zh else _EN
    arguments: dict[str, Any] = {
        "number": "TS20231027000001",
        "subject": values["subject"],
        "support_name": values["support_name"],
        "support_address": "support@example.com",
        "locale": "zh-CN" if zh else "en",
    }
    overrides = (_ZH_BY_KIND if zh else _EN_BY_KIND).get(kind, {})
    for name in variables_of(kind) - arguments.keys():
        arguments[name] = overrides[name] if name in overrides else values[name]
    return cls(**arguments)


_ZH: dict[str, object] = {
    "subject": "报表导出功能点击后无响应",
    "support_name": "IT 服务台",
    "requester_name": "张伟",
    "handler_name": "李娜",
    "lead_name": "王强",
    "priority": "P1",
    "category": "功能异常",
    "team": "应用支持组",
    "assign_within": timedelta(minutes=30),
    "assign_by": datetime(2023, 10, 27, 10, 5, tzinfo=_CST),
    "deadline": datetime(2023, 10, 27, 10, 5, tzinfo=_CST),
    "late_by": timedelta(minutes=42),
    "missing": (
        MissingDetail("影响范围", "受影响的人数或部门，例如：财务部约 20 人"),
        MissingDetail("复现步骤", "从打开系统到出现问题的操作步骤"),
        MissingDetail("期望结果", "正常情况下应当看到什么"),
    ),
    "requester": Address("张伟", "zhang.wei@example.com"),
    "fields": {
        "系统": "财务报表系统",
        "影响范围": "财务部约 20 人",
        "发生时间": "2023-10-27 09:20",
    },
    "text": (
        "您好，\n\n"
        "今天上午开始，在“月度报表”页面点击“导出 Excel”按钮后没有任何反应，"
        "也没有下载文件。换了 Chrome 和 Edge 都一样，同事也遇到了相同问题。\n"
        "月底结账需要这份报表，麻烦尽快处理，谢谢！"
    ),
    "attachments": (
        AttachmentInfo("导出按钮截图.png", 245_760, "image/png"),
        AttachmentInfo("浏览器控制台日志.txt", 3_412, "text/plain"),
    ),
    "resolution": (
        "导出服务的临时目录磁盘已满，导致导出任务失败。"
        "我们已清理临时文件并增加了自动清理任务，现在可以正常导出。"
    ),
    "reopen_days": 7,
    "reason": "今天下午又出现了同样的问题，导出按钮还是没有反应。",
    "auto_closed": False,
    "acknowledge": True,
    "question": "",
    "reminder": False,
    "co_handlers": ("zhao.min@example.com",),
    "assigned_by": "",
    "reopened_by": "zhang.wei@example.com",
    "status": "in_progress",
    "applied": True,
    "note_kept": False,
    "results": (
        CommandOutcome("#优先级 P1", True, "优先级 P2 -> P1，指派期限重新计算"),
        CommandOutcome("#解决", True, "工单已解决，处理结果已发给提单人"),
    ),
}

_EN: dict[str, object] = {
    "subject": "Report export does nothing when clicked",
    "support_name": "IT Service Desk",
    "requester_name": "Emily Carter",
    "handler_name": "Daniel Lee",
    "lead_name": "Sarah Johnson",
    "priority": "P1",
    "category": "Functional issue",
    "team": "Application Support",
    "assign_within": timedelta(minutes=30),
    "assign_by": datetime(2023, 10, 27, 10, 5, tzinfo=UTC),
    "deadline": datetime(2023, 10, 27, 10, 5, tzinfo=UTC),
    "late_by": timedelta(minutes=42),
    "missing": (
        MissingDetail("Impact", "how many people or which teams are affected"),
        MissingDetail("Steps to reproduce", "what you did, step by step, before it happened"),
        MissingDetail("Expected result", "what you expected to see instead"),
    ),
    "requester": Address("Emily Carter", "emily.carter@example.com"),
    "fields": {
        "System": "Financial reporting",
        "Impact": "Finance team, about 20 people",
        "Started": "2023-10-27 09:20",
    },
    "text": (
        "Hi,\n\n"
        "Since this morning, clicking \"Export to Excel\" on the Monthly Report page does "
        "nothing and no file is downloaded. Same in Chrome and Edge, and my colleagues see "
        "it too.\nWe need this report for the month-end close, so a quick fix would be "
        "much appreciated."
    ),
    "attachments": (
        AttachmentInfo("export-button.png", 245_760, "image/png"),
        AttachmentInfo("console-log.txt", 3_412, "text/plain"),
    ),
    "resolution": (
        "The export service's temporary disk was full, so export jobs failed. We cleared "
        "it and added an automatic clean-up job; exporting works again."
    ),
    "reopen_days": 7,
    "reason": "It happened again this afternoon: the export button does nothing.",
    "auto_closed": False,
    "acknowledge": True,
    "question": "",
    "reminder": False,
    "co_handlers": ("min.zhao@example.com",),
    "assigned_by": "",
    "reopened_by": "emily.carter@example.com",
    "status": "in_progress",
    "applied": True,
    "note_kept": False,
    "results": (
        CommandOutcome("#priority P1", True, "priority P2 -> P1, assignment deadline "
                                             "recomputed"),
        CommandOutcome("#resolve", True, "ticket resolved; the resolution went to the "
                                         "requester"),
    ),
}

# Where one kind's variable means something else than the same name elsewhere
_ZH_BY_KIND: dict[str, dict[str, object]] = {
    "acceptance": {"handler_name": None, "missing": ()},
    "reply": {
        "text": (
            "张伟您好，\n\n"
            "问题已经定位：导出服务的临时目录磁盘已满，导致导出任务失败。"
            "我们正在清理，预计 30 分钟内恢复。\n"
            "恢复后请刷新页面再试一次，如仍有问题请直接回复本邮件。"
        ),
    },
}

_EN_BY_KIND: dict[str, dict[str, object]] = {
    "acceptance": {"handler_name": None, "missing": ()},
    "reply": {
        "text": (
            "Hi Emily,\n\n"
            "We found the cause: the export service's temporary disk is full, so export jobs "
            "fail. We are clearing it now and expect exports to work again within 30 minutes.\n"
            "Please refresh the page and try again then; if it still fails, just reply to this "
            "email."
        ),
    },
}


# ---------------------------------------------------------------------------------------------
# The variables as JSON: an outbox row stores them at queue time, the mail is written from them
# at send time (:mod:`daemon.replies.writer`), so it says what was true when it was queued.
#
# Written by each field's declared type, so the JSON stays plain and readable in the database:
# a datetime is its ISO 8601 text with the offset it was given in (the support zone), a
# timedelta its seconds, a nested value object a mapping of its fields, a tuple a list.
# A dozen lines for the handful of types kinds use; a validation library (pydantic, cattrs)
# would be a new dependency with a start-up cost on every `poll --once`, for no more safety.


def to_json(obj: MailKind) -> dict[str, Any]:
    """The variables of a kind instance as a JSON-ready mapping (the kind itself not included)."""
    return {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def from_json(kind: str, data: Mapping[str, Any], zone: tzinfo | None = None) -> MailKind:
    """The kind instance :func:`to_json` wrote; ValueError when the data does not fit the kind
    (a variable missing or of another type, e.g. a row queued before a kind changed).

    ``zone``: times are given in it (the support zone), so ``%Z`` names it as it did at queue
    time rather than as a bare offset.
    """
    cls = kind_class(kind)
    hints = _hints(cls)
    try:
        values = {name: _decode(hints[name], value) for name, value in data.items()}
        if zone is not None:
            values = {name: v.astimezone(zone) if isinstance(v, datetime) else v
                      for name, v in values.items()}
        return cls(**values)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the stored variables of a {kind} mail do not fit the kind: "
                         f"{type(exc).__name__}: {exc}") from None


def _hints(cls: type) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = typing.get_type_hints(cls)
    return found


_HINTS: dict[type, dict[str, Any]] = {}


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _decode(hint: Any, value: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # X | None
        if value is None:
            return None
        return _decode(next(a for a in args if a is not type(None)), value)
    if hint is datetime:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError(f"a stored time has no offset: {value!r}")
        return parsed
    if hint is timedelta:
        return timedelta(seconds=float(value))
    if origin is tuple:
        return tuple(_decode(args[0], v) for v in value)
    if origin is Mapping or origin is dict:
        return {str(k): _decode(args[1], v) for k, v in dict(value).items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        inner = _hints(hint)
        return hint(**{k: _decode(inner[k], v) for k, v in dict(value).items()})
    if hint in (str, int, bool) and not isinstance(value, hint):
        raise TypeError(f"expected {hint.__name__}, got {type(value).__name__}")
    return value
