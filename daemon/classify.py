"""Problem type, priority and structured fields, read from what the requester wrote (zh/en).

Deciding only: :func:`classify` returns a :class:`Classification`; the pipeline stores it.
The keyword tables are data, in the order they are tried; the first category whose words
appear wins, so the more specific kinds (outage, access) come before the general ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from daemon.config import Config

# The English labels of the built-in categories (what English-writing requesters read).
BUILTIN_LABELS_EN: dict[str, str] = {
    "系统故障": "System failure", "功能异常": "Functional issue", "权限申请": "Access request",
    "技术咨询": "Technical question", "需求开发": "Feature request",
}

CATEGORIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (category, default team, keywords)
    ("系统故障", "ops", ("宕机", "故障", "无法访问", "打不开", "崩溃", "down", "outage",
                        "unreachable", "crash", "502", "503", "服务不可用", "断网", "无法连接",
                        "无法登录", "登不上", "登录不了", "连不上", "一直转圈", "无响应", "超时",
                        "cannot log in", "can't log in", "unable to log in", "not responding",
                        "timed out", "timeout")),
    ("权限申请", "admins", ("权限", "开通", "账号", "帐号", "申请访问", "access request",
                          "permission", "grant access", "account", "reset password", "重置密码")),
    ("需求开发", "dev", ("需求", "新功能", "希望增加", "建议增加", "feature request",
                        "new feature", "enhancement", "please add")),
    ("功能异常", "dev", ("报错", "异常", "错误", "bug", "error", "exception", "not working",
                        "doesn't work", "does not work", "失败", "不正常")),
    ("技术咨询", "ops", ("请问", "咨询", "如何", "怎么", "how to", "how do i", "question",
                        "是否支持", "能否")),
)
DEFAULT_CATEGORY = ("技术咨询", "ops")

PRIORITY_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("P0", ("p0", "紧急", "全部用户", "所有用户", "生产事故", "urgent", "emergency", "critical",
            "all users", "production down")),
    ("P1", ("p1", "严重", "尽快", "影响业务", "全部门", "整个部门", "多个部门", "asap",
            "high priority", "blocking", "whole team", "many users")),
    ("P3", ("p3", "不急", "有空", "low priority", "when you have time")),
)
DEFAULT_PRIORITY = "P2"

FIELD_NAMES: dict[str, str] = {
    "系统": "system", "system": "system", "所属系统": "system", "application": "system",
    "环境": "environment", "environment": "environment",
    "影响范围": "impact", "impact": "impact",
    "联系电话": "phone", "电话": "phone", "phone": "phone",
    "复现步骤": "steps", "steps": "steps", "重现步骤": "steps",
    "错误信息": "error", "error message": "error", "报错信息": "error",
    "发生时间": "occurred_at", "time": "occurred_at",
    "期望结果": "expected", "expected": "expected",
    "优先级": "priority", "priority": "priority",
    "部门": "department", "department": "department",
}
_FIELD_LINE = re.compile(r"^\s*([^\s:：][^:：\n]{0,30}?)\s*[:：]\s*(\S.{0,500})$", re.MULTILINE)
_EXPLICIT_PRIORITY = re.compile(r"\bP([0-3])\b", re.IGNORECASE)


@dataclass(frozen=True)
class Classification:
    category: str
    team: str
    priority: str
    fields: dict[str, str] = field(default_factory=dict)
    why: str = ""


def extract_fields(text: str) -> dict[str, str]:
    """``Key: value`` lines with a known key (zh or en), first occurrence wins."""
    found: dict[str, str] = {}
    for key, value in _FIELD_LINE.findall(text):
        name = FIELD_NAMES.get(key.strip().lower())
        if name and name not in found:
            found[name] = value.strip()
    return found


def classify(subject: str, text: str) -> Classification:
    fields = extract_fields(text)
    haystack = f"{subject}\n{text}".lower()
    category, team = DEFAULT_CATEGORY
    why = "no keyword matched: default category"
    for name, default_team, words in CATEGORIES:
        hit = next((w for w in words if w in haystack), None)
        if hit:
            category, team, why = name, default_team, f"keyword {hit!r}"
            break
    priority = DEFAULT_PRIORITY
    explicit = _EXPLICIT_PRIORITY.search(fields.get("priority", "")) or _EXPLICIT_PRIORITY.search(
        subject)
    if explicit:
        priority = f"P{explicit.group(1)}"
    else:
        for level, words in PRIORITY_WORDS:
            if any(w in haystack for w in words if not w.startswith("p")):
                priority = level
                break
        else:
            if category == "技术咨询":
                priority = "P3"
    return Classification(category, team, priority, fields, why)


@dataclass(frozen=True)
class RequiredField:
    """A detail a report of some category must carry before a handler can act on it."""

    name: str
    label_zh: str
    label_en: str
    hint_zh: str
    hint_en: str


REQUIRED: dict[str, tuple[RequiredField, ...]] = {
    "系统故障": (
        RequiredField("system", "系统", "System", "出问题的系统或服务名称",
                      "the name of the affected system or service"),
        RequiredField("impact", "影响范围", "Impact", "受影响的人数或部门",
                      "how many people or which teams are affected"),
    ),
    "功能异常": (
        RequiredField("system", "系统", "System", "出问题的系统或功能模块",
                      "the affected system or module"),
        RequiredField("steps", "复现步骤", "Steps", "怎样操作会出现这个问题",
                      "what you did when the problem appeared"),
    ),
    "权限申请": (
        RequiredField("system", "系统", "System", "需要开通权限的系统",
                      "the system you need access to"),
        RequiredField("department", "部门", "Department", "您所在的部门",
                      "your department"),
    ),
}


def missing_fields(category: str | None, fields: dict[str, str]) -> tuple[RequiredField, ...]:
    """The required details of a category that the report does not give."""
    return tuple(f for f in REQUIRED.get(category or "", ()) if not fields.get(f.name))


# Every field a category may require, with the words a requester reads when it is missing.
FIELD_CATALOGUE: dict[str, RequiredField] = {f.name: f for f in (
    RequiredField("system", "系统", "System", "出问题的系统或服务名称",
                  "the name of the affected system or service"),
    RequiredField("impact", "影响范围", "Impact", "受影响的人数或部门",
                  "how many people or which teams are affected"),
    RequiredField("steps", "复现步骤", "Steps", "怎样操作会出现这个问题",
                  "what you did when the problem appeared"),
    RequiredField("department", "部门", "Department", "您所在的部门", "your department"),
    RequiredField("phone", "联系电话", "Phone", "方便联系您的电话", "a phone number to reach you"),
    RequiredField("environment", "环境", "Environment", "操作系统、浏览器或客户端版本",
                  "operating system, browser or client version"),
    RequiredField("error", "错误信息", "Error message", "页面或日志中的报错原文",
                  "the exact error message"),
    RequiredField("expected", "期望结果", "Expected result", "您期望的结果",
                  "what you expected to happen"),
    RequiredField("occurred_at", "发生时间", "Occurred at", "问题首次出现的时间",
                  "when the problem first appeared"),
)}


@dataclass(frozen=True)
class Category:
    """A problem type as the process uses it: where it goes and what it must carry."""

    name: str                        # as stored, e.g. "系统故障"
    label_en: str                    # e.g. "System failure"
    team: str                        # the team it is routed to
    keywords: tuple[str, ...] = ()
    required: tuple[str, ...] = ()   # field names (FIELD_CATALOGUE keys)

    def label(self, locale: str) -> str:
        """What a reader of ``locale`` sees: the Chinese name, or the English label."""
        return self.name if locale.startswith("zh") or not self.label_en else self.label_en


def _builtin_categories() -> tuple[Category, ...]:
    return tuple(Category(name, BUILTIN_LABELS_EN.get(name, name), team, words,
                          tuple(f.name for f in REQUIRED.get(name, ())))
                 for name, team, words in CATEGORIES)


@dataclass(frozen=True)
class Reader:
    """Reads requests with the site's tables: ``[[categories]]`` (else the built-in ones) and
    ``[[systems]]``. Built once per config; every caller (intake, inspect, the workflow, the
    handlers' ``#type`` command) asks it, so they all agree."""

    categories: tuple[Category, ...]
    systems: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> Reader:
        if config.categories:
            cats = tuple(Category(c.name, c.label_en or c.name, c.team, c.keywords, c.required)
                         for c in config.categories)
        else:
            cats = _builtin_categories()
        return cls(cats, tuple((s.name, s.aliases) for s in config.systems))

    def category(self, name: str | None) -> Category | None:
        """The category stored under ``name``."""
        return next((c for c in self.categories if c.name == name), None)

    def label_en(self, name: str | None) -> str | None:
        """The English label of a stored category name (None for none)."""
        cat = self.category(name)
        return cat.label_en if cat else name

    def lookup(self, text: str) -> Category | None:
        """A category by its name or English label, as a handler or operator writes it."""
        wanted = text.strip().casefold()
        return next((c for c in self.categories
                     if wanted in (c.name.casefold(), c.label_en.casefold())), None)

    def classify(self, subject: str, text: str) -> Classification:
        found = classify(subject, text)
        cat = self.category(found.category)
        if cat is None:  # a configured table without the built-in name: first keyword wins
            haystack = f"{subject}\n{text}".lower()
            cat = next((c for c in self.categories
                        if any(w.lower() in haystack for w in c.keywords)), self.categories[-1])
            found = Classification(cat.name, cat.team, found.priority, found.fields,
                                   f"configured category {cat.name}")
        return Classification(found.category, cat.team, found.priority, found.fields, found.why)

    def fields(self, text: str) -> dict[str, str]:
        """The details a text gives (``key: value`` lines and what can be read without a key)."""
        return extract_fields(text)

    def missing(self, category: str | None, fields: Mapping[str, str]
                ) -> tuple[RequiredField, ...]:
        """The required details of ``category`` that ``fields`` do not give."""
        cat = self.category(category)
        if cat is None:
            return ()
        return tuple(FIELD_CATALOGUE.get(name) or RequiredField(name, name, name, "", "")
                     for name in cat.required if not fields.get(name))
