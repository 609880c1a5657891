"""Problem type, priority and structured fields, read from what the requester wrote (zh/en).

Deciding only: :meth:`Reader.classify` returns a :class:`Classification`; the pipeline
stores it. Every caller (intake, ``inspect``, the workflow, the handlers' commands) asks the
one :class:`Reader` built from the config, so they all agree.

**Category.** Every category gets a score, and the best wins (ties go to the one listed
first, so the more specific kinds come before the general ones; the last one is the default
when nothing matches):

* an explicit field (``问题类型: 权限申请``, ``Category: Access request``): 100;
* a subject tag naming the category (``[系统故障]``, ``【权限申请】``): 50;
* each keyword in the subject: 4, in the new text: 2 (the signature and quoted history do not
  count); hedges that every polite request contains (请问, 能否, please ...) count half.

ASCII keywords match on word boundaries (``down`` is not in ``download``, ``account`` not in
``accounting``); other keywords as substrings, but digits never touch digits (``502`` is not
in ``13850212345``).

**Priority.** An explicit field (``优先级: P1``) or subject tag (``[P0]``, ``【紧急】``) first,
then ``紧急程度``, then the standard's criteria as keyword groups: core business down or many
users -> P0; a module broken for some users, or work blocked -> P1; a question or improvement
-> P2; consultation -> P3.

**Fields** are read by :mod:`daemon.fields`: keyed details, then what the text gives without
a key (a system named in ``[[systems]]``, an impact phrase, reproduction steps), then the
signature. Times are read by :mod:`daemon.readtime`: the ISO 8601 value is stored under the
field's name and the words as written under ``<name>_text``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from daemon import fields as reading
from daemon.config import Config
from daemon.fields import System
from daemon.readtime import read_time

__all__ = [
    "BUILTIN_SYSTEMS", "CATEGORIES", "FIELD_CATALOGUE", "Category", "Classification",
    "Reader", "RequiredField", "field_label", "field_lines",
]

# ---------------------------------------------------------------- the built-in tables

# The English labels of the built-in categories (what English-writing requesters read).
BUILTIN_LABELS_EN: dict[str, str] = {
    "系统故障": "System failure", "功能异常": "Functional issue", "权限申请": "Access request",
    "技术咨询": "Technical question", "需求开发": "Feature request",
}

CATEGORIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (category, default team, keywords), the more specific first; the last is the default.
    ("系统故障", "ops", (
        "宕机", "故障", "报修", "无法访问", "访问不了", "打不开", "崩溃", "崩了", "挂了", "瘫痪",
        "服务不可用", "断网", "网断了", "没网", "上不了网", "无法上网", "网络不通", "无法连接",
        "连不上", "连接不上", "无法登录", "无法登陆", "登不上", "登录不了", "登陆不了", "进不去",
        "一直转圈", "无响应", "没有响应", "超时", "很慢", "特别慢", "非常慢", "卡死", "卡顿",
        "蓝屏", "黑屏", "死机", "开不了机", "无法开机", "掉线", "断线", "中断", "卡纸",
        "无法打印", "打印不了", "打印不出来", "无信号", "无法投屏", "全公司", "所有人",
        "所有用户", "停线", "停产", "502", "503", "504", "down", "outage", "unreachable",
        "crash", "crashed", "crashes", "bad gateway", "service unavailable", "cannot log in",
        "can't log in", "unable to log in", "cannot login", "can't login", "unable to login",
        "not responding", "timed out", "timeout", "no internet", "cannot connect",
        "can't connect", "unable to connect", "offline", "blue screen", "won't start",
        "won't boot", "very slow", "extremely slow", "disconnected", "disconnects",
        "not loading", "cannot access", "can't access", "unable to access", "paper jam",
        "cannot print", "can't print", "no signal", "all users", "everyone", "nobody can",
        "no one can",
        # what is broken, when it is infrastructure (weak: see WEAK_WORDS)
        "打印机", "投影仪", "投影", "电脑", "笔记本", "服务器", "网络", "无线", "wifi", "显示器",
        "printer", "projector", "laptop", "server", "network", "internet", "monitor",
        # failure words that say nothing of what failed: both kinds of fault have them
        "not working", "doesn't work", "does not work", "isn't working", "stopped working",
        "broken", "用不了", "不能用", "无法使用", "坏了")),
    ("权限申请", "admins", (
        "权限", "开通", "开个账号", "新账号", "账号", "帐号", "申请访问", "申请使用", "授权",
        "重置", "重置密码", "密码重置", "忘记密码", "密码忘记", "密码过期", "解锁", "被锁", "锁定",
        "邮件组", "入职", "access request", "permission", "permissions", "grant access",
        "grant me", "grant read", "grant write", "need access", "request access",
        "requesting access", "read access", "write access", "read/write access",
        "developer access", "admin rights", "access rights", "give me access", "access to the",
        "add me to", "new account", "create an account", "account for", "reset password",
        "reset my password", "password reset", "forgot my password", "forgot password",
        "unlock", "locked out", "account locked", "account is locked", "new hire",
        "new joiner", "new starter", "onboarding", "license", "licence", "password",
        "create accounts", "accounts for", "set up an account", "密码")),
    ("需求开发", "dev", (
        "需求", "新功能", "希望增加", "建议增加", "能否增加", "增加一个", "新增一个", "新增字段",
        "新增功能", "新增报表", "加一个", "开发一个", "做一个", "优化", "改进", "改版", "定制",
        "功能建议", "建议", "feature request", "new feature", "enhancement", "please add a",
        "please add an", "could you add a", "can you add a", "add a new", "add an option",
        "would like to add", "improvement", "suggestion",
        "it would be nice", "would be great", "nice to have", "customization",
        "customisation", "new report", "new field")),
    ("功能异常", "dev", (
        "报错", "异常", "错误", "bug", "失败", "不正常", "显示不正确", "数据不对", "不对",
        "乱码", "闪退", "白屏", "空白", "没反应", "点不了", "卡住", "卡在", "无法保存",
        "保存不了", "无法提交", "提交不了", "无法上传", "上传不了", "无法下载", "下载不了",
        "无法导出", "导出不了", "无法同步", "同步不了", "不同步", "收不到", "发不出", "无法发送",
        "无法接收", "不显示", "显示空白", "计算错误", "不准确", "error", "exception",
        "fails", "failed", "failure", "wrong", "incorrect", "garbled", "stuck",
        "nothing happens", "cannot save", "can't save", "cannot download", "can't download",
        "unable to download", "cannot upload", "can't upload", "cannot export",
        "cannot submit", "can't submit", "not syncing", "won't sync", "cannot sync",
        "doesn't sync", "not receiving", "cannot send", "can't send", "blank page",
        "missing data", "glitch", "not visible", "disappeared", "cannot expand", "看不到",
        "不见了",
        # what is broken, when it is a function of an application (weak)
        "模块", "报表", "页面", "按钮", "字段", "单据", "表单", "module", "report", "page",
        "button", "field", "form",
        "not working", "doesn't work", "does not work", "isn't working", "stopped working",
        "broken", "用不了", "不能用", "无法使用", "坏了")),
    ("技术咨询", "ops", (
        "请问", "咨询", "如何", "怎么设置", "怎么操作", "怎么使用", "怎么用", "怎么添加",
        "怎么安装", "怎么连接", "怎么配置", "怎么预定", "怎么填", "想问", "问一下", "问下", "怎样",
        "是否支持", "能否", "是否可以", "可以吗", "有没有办法", "求助", "教程", "操作指引",
        "使用方法", "在哪里", "how to", "how do i", "how can i", "question", "is it possible",
        "is there a way", "where can i", "could you explain", "guidance", "advice")),
)
DEFAULT_CATEGORY = ("技术咨询", "ops")

# Words that count half: hedges every polite request contains, and the names of things that
# say what broke but not how.
WEAK_WORDS = frozenset({
    "请问", "能否", "是否可以", "可以吗", "question", "is it possible",
    "打印机", "投影仪", "投影", "电脑", "笔记本", "服务器", "网络", "无线", "wifi", "显示器",
    "printer", "projector", "laptop", "server", "network", "internet", "monitor",
    "模块", "报表", "页面", "按钮", "字段", "单据", "表单", "module", "report", "page", "button",
    "field", "form", "建议", "password", "密码"})

# Systems requesters name, when [[systems]] is not configured.
BUILTIN_SYSTEMS: tuple[System, ...] = (
    System("OA", ("OA系统", "OA 系统", "办公系统", "协同办公", "审批系统")),
    System("CRM", ("CRM系统", "客户管理系统", "Salesforce")),
    System("ERP", ("ERP系统", "用友", "金蝶", "U8", "K3")),
    System("SAP", ("SAP系统",)),
    System("VPN", ("VPN客户端", "EasyConnect", "AnyConnect")),
    System("邮箱", ("邮件系统", "企业邮箱", "邮件", "邮件组", "Email", "E-mail", "mail",
                  "Outlook", "Exchange", "Foxmail", "mailbox", "webmail", "distribution list",
                  "mailing list")),
    System("Wi-Fi", ("WiFi", "无线网络", "无线网", "无线")),
    System("网络", ("有线网络", "内网", "外网", "网线", "network", "internet")),
    System("打印机", ("printer", "复印机", "扫描仪", "scanner", "copier")),
    System("会议室设备", ("投影仪", "投影", "projector", "电视", "大屏", "TV", "display")),
    System("电脑", ("笔记本", "台式机", "主机", "laptop", "desktop", "PC", "computer",
                  "workstation")),
    System("财务系统", ("报销系统", "费控系统", "finance system", "expense system")),
    System("HR系统", ("HR 系统", "人事系统", "HR system", "eHR", "考勤系统", "考勤", "薪资系统",
                    "payroll")),
    System("共享盘", ("共享文件夹", "共享目录", "文件服务器", "网盘", "NAS", "shared folder",
                   "shared drive", "file share", "share drive", "file server")),
    System("企业微信", ("WeCom", "企微")),
    System("钉钉", ("DingTalk",)),
    System("Office", ("Word", "Excel", "PowerPoint", "PPT", "Office 365", "Microsoft 365",
                      "Teams", "OneDrive")),
    System("视频会议", ("腾讯会议", "Zoom", "会议系统", "视频会议系统")),
    System("门户", ("portal", "intranet", "门户网站", "内网门户", "客户门户")),
    System("官网", ("公司官网", "website", "网站")),
    System("Jira", ()),
    System("GitLab", ("git仓库",)),
    System("MES", ("MES系统", "生产系统")),
    System("WMS", ("WMS系统", "仓储系统", "仓库系统")),
)

# ---------------------------------------------------------------- priority criteria

_EXPLICIT_PRIORITY = re.compile(r"(?<![A-Za-z0-9])P([0-3])(?![0-9])", re.IGNORECASE)
_LEVEL_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # what a priority, urgency or tag value says, tried in order ("不紧急" before "紧急")
    ("P3", ("不紧急", "不急", "低", "low", "minor", "不着急")),
    ("P0", ("非常紧急", "特急", "十万火急", "最高", "紧急", "critical", "blocker", "highest",
            "emergency", "urgent")),
    ("P1", ("较急", "高", "急", "严重", "high", "major", "important")),
    ("P2", ("中", "一般", "普通", "正常", "medium", "normal", "moderate")),
)
# A subject tag that is a priority: [P0], 【紧急】, [Urgent].
_TAG_LEVELS = {"特急": "P0", "非常紧急": "P0", "紧急": "P0", "加急": "P0", "urgent": "P0",
               "critical": "P0", "emergency": "P0", "急": "P1", "高": "P1", "重要": "P1",
               "high": "P1", "important": "P1", "中": "P2", "一般": "P2", "normal": "P2",
               "medium": "P2", "低": "P3", "不急": "P3", "low": "P3"}
_TAG = re.compile(r"[\[【(（]\s*([^\]】)）]{1,20}?)\s*[\]】)）]")
_CALM = re.compile(r"不紧急|不急|不着急|不是很急|并不急|no rush|not urgent|low priority|"
                   r"when you have time|有空的时候|有空时|有时间的时候", re.IGNORECASE)
_CRITERIA: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("P0", "core business down or many users", (
        "全公司", "整个公司", "全集团", "全体员工", "全体同事", "全员", "所有人", "所有同事",
        "所有用户", "全部用户", "全部同事", "所有门店", "所有分公司", "宕机", "瘫痪", "上百人",
        "几百人", "上千人", "几百个",
        "服务不可用", "生产事故", "生产环境", "线上环境", "业务中断", "停工", "停产", "停线",
        "产线停", "line is stopped", "line stopped", "production stopped",
        "无法营业", "无法收款", "无法下单", "all users", "everyone", "everybody",
        "whole company", "entire company", "company-wide", "production down", "outage",
        "nobody can", "no one can", "service unavailable", "all staff")),
    ("P1", "a module broken for some users, or work blocked", (
        "全部门", "整个部门", "多个部门", "各部门", "好几个部门", "全组", "整个团队", "整个组",
        "部门的人都", "部门同事都", "大家都", "同事们都", "很多人", "很多同事", "多名同事",
        "多位同事", "部分用户", "部分同事", "几十人", "几十个人", "十几个人", "十几人", "几个人",
        "几个同事", "好几个人", "影响业务", "影响工作", "无法工作", "没法工作",
        "无法办公", "紧急", "很急", "着急", "急需", "严重", "whole team", "entire team",
        "whole department", "entire department", "several users", "some users", "many users",
        "multiple users", "several colleagues", "many people", "blocking", "blocked",
        "can't work", "cannot work", "urgent", "asap", "high priority")),
)
# A whole group is affected: 整个采购部, 销售部全体.
_GROUP_WIDE = re.compile(r"整个[\u4e00-\u9fff]{1,6}?(?:部门|部|团队|组|中心|办公室|车间|门店)|"
                         r"[\u4e00-\u9fff]{1,6}?(?:部门|部|组|中心|车间)(?:全体|全员|所有人|的人都|"
                         r"同事都)")
_SINGLE_USER = re.compile(r"只有我|仅我|就我一个|只是我|只影响我|我一个人|仅本人|"
                          r"(?<![A-Za-z])(?:only me|just me|only my)(?![A-Za-z])", re.IGNORECASE)
_HEADCOUNT = re.compile(r"(?<!\d)(\d{1,5})\s*(?:多|余)?\s*(?:个)?\s*(?:人|位同事|名同事|名员工|"
                        r"位用户|名用户|个用户|个同事|(?:users|people|colleagues|staff|employees)"
                        r"(?![A-Za-z]))", re.IGNORECASE)
# Consultation (P3) and the kinds that are a question or an improvement (P2) by default.
_DEFAULT_PRIORITY = {"技术咨询": "P3"}
DEFAULT_PRIORITY = "P2"

_TIME_FIELDS = ("occurred_at", "expected_by")


@dataclass(frozen=True)
class Classification:
    """What :meth:`Reader.classify` decided, with the reasons ``inspect`` shows."""

    category: str
    team: str
    priority: str
    fields: dict[str, str] = field(default_factory=dict)
    why: str = ""                                              # why this category
    scores: dict[str, int] = field(default_factory=dict)       # every category's score
    priority_why: str = ""                                     # why this priority
    field_sources: dict[str, str] = field(default_factory=dict)  # where each field was read


@dataclass(frozen=True)
class RequiredField:
    """A detail a report of some category must carry before a handler can act on it."""

    name: str
    label_zh: str
    label_en: str
    hint_zh: str
    hint_en: str


# Every field the reader knows, with the words a requester reads when it is missing and the
# label `tickets show` prints.
FIELD_CATALOGUE: dict[str, RequiredField] = {f.name: f for f in (
    RequiredField("system", "系统", "System", "出问题的系统或服务名称",
                  "the name of the affected system or service"),
    RequiredField("impact", "影响范围", "Impact", "受影响的人数或部门",
                  "how many people or which teams are affected"),
    RequiredField("steps", "复现步骤", "Steps", "怎样操作会出现这个问题",
                  "what you did when the problem appeared"),
    RequiredField("department", "部门", "Department", "您所在的部门", "your department"),
    RequiredField("company", "公司", "Company", "您所在的公司或单位",
                  "your company or organisation"),
    RequiredField("phone", "联系电话", "Phone", "方便联系您的电话", "a phone number to reach you"),
    RequiredField("employee_id", "工号", "Employee ID", "您的工号或员工编号",
                  "your employee number"),
    RequiredField("customer_id", "客户编号", "Customer No.", "您的客户编号",
                  "your customer number"),
    RequiredField("name", "姓名", "Name", "您的姓名", "your name"),
    RequiredField("occurred_at", "发生时间", "Occurred at", "问题首次出现的时间",
                  "when the problem first appeared"),
    RequiredField("expected_by", "期望解决时间", "Expected by", "您希望何时解决或完成",
                  "when you need it resolved or done"),
    RequiredField("urgency", "紧急程度", "Urgency", "紧急、高、一般或低",
                  "critical, high, normal or low"),
    RequiredField("environment", "环境", "Environment", "操作系统、浏览器或客户端版本",
                  "operating system, browser or client version"),
    RequiredField("error", "错误信息", "Error message", "页面或日志中的报错原文",
                  "the exact error message"),
    RequiredField("expected", "期望结果", "Expected result", "您期望的结果",
                  "what you expected to happen"),
    RequiredField("priority", "优先级", "Priority", "P0、P1、P2 或 P3", "P0, P1, P2 or P3"),
    RequiredField("category", "问题类型", "Category",
                  "系统故障、功能异常、权限申请、技术咨询或需求开发",
                  "system failure, functional issue, access request, question or feature"),
)}

# The required details of the built-in categories.
REQUIRED: dict[str, tuple[str, ...]] = {
    "系统故障": ("system", "impact"),
    "功能异常": ("system", "steps"),
    "权限申请": ("system", "department"),
}


def field_label(name: str, locale: str) -> str:
    """The label of field ``name`` for a reader of ``locale`` (``系统`` / ``System``); a
    ``<name>_text`` field is the words as written of the time field ``<name>``."""
    zh = locale.startswith("zh")
    if name.endswith("_text") and name[:-5] in FIELD_CATALOGUE:
        return field_label(name[:-5], locale) + ("（原文）" if zh else " (as written)")
    known = FIELD_CATALOGUE.get(name)
    if known is None:
        return name
    return known.label_zh if zh else known.label_en


def field_lines(fields: Mapping[str, object], locale: str) -> list[str]:
    """``label: value`` lines of a ticket's fields, catalogue order first, a time's words as
    written beside its ISO value."""
    order = {name: i for i, name in enumerate(FIELD_CATALOGUE)}
    names = sorted((n for n in fields if not (n.endswith("_text") and n[:-5] in fields)),
                   key=lambda n: (order.get(n, len(order)), n))
    lines = []
    for name in names:
        value = str(fields[name])
        written = fields.get(f"{name}_text")
        if written is not None and str(written) != value:
            value += f" ({written})"
        lines.append(f"{field_label(name, locale)}: {value}")
    return lines


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
                          REQUIRED.get(name, ()))
                 for name, team, words in CATEGORIES)


@functools.lru_cache(maxsize=256)
def _keywords(words: tuple[str, ...]) -> tuple[str, ...]:
    """``words`` lower case, distinct, longest first (the order the matcher tries them)."""
    return tuple(sorted({w.lower() for w in words if w.strip()}, key=len, reverse=True))


@functools.lru_cache(maxsize=1024)
def _matcher(present: tuple[str, ...]) -> re.Pattern[str]:
    """One regex finding any of ``present`` (lower case, longest first; ASCII on word
    boundaries) in lower-case text."""
    return re.compile("|".join(f"(?:{reading.word_pattern(w)})" for w in present))


def _hits(words: tuple[str, ...], text: str) -> list[str]:
    """The distinct words of ``words`` found in ``text`` (any case), in the order they
    appear.

    A category has dozens of keywords, and a regex alternation of all of them tries each at
    every position of the text (~180 µs for a mail). Most are not in a given text at all: a
    substring test drops those first (C speed), and the regex runs over the few left, which
    finds exactly what the whole alternation would (a word that is nowhere in the text
    matches nowhere)."""
    if not text:
        return []
    lowered = text.lower()
    present = tuple(w for w in _keywords(words) if w in lowered)
    if not present:
        return []
    found: list[str] = []
    for match in _matcher(present).finditer(lowered):
        word = match.group(0)
        if word not in found:
            found.append(word)
    return found


def _level(value: str) -> str | None:
    """The priority a field value or tag states: ``P1``, ``紧急``, ``high`` ..."""
    if match := _EXPLICIT_PRIORITY.search(value):
        return f"P{match.group(1)}"
    lowered = value.strip().lower()
    for level, words in _LEVEL_WORDS:
        if any(re.search(reading.word_pattern(w), lowered) for w in words):
            return level
    return None


def _normalise_systems(systems: Iterable[System | tuple[str, tuple[str, ...]]]
                       ) -> tuple[System, ...]:
    return tuple(s if isinstance(s, System) else System(s[0], tuple(s[1])) for s in systems)


@dataclass(frozen=True)
class Reader:
    """Reads requests with the site's tables: ``[[categories]]`` (else the built-in ones) and
    ``[[systems]]`` (else :data:`BUILTIN_SYSTEMS`), times in ``zone``. Built once per config;
    every caller (intake, inspect, the workflow, the handlers' ``#type`` command) asks it, so
    they all agree."""

    categories: tuple[Category, ...]
    systems: tuple[System, ...] = BUILTIN_SYSTEMS
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "systems", _normalise_systems(self.systems) or BUILTIN_SYSTEMS)

    @classmethod
    def from_config(cls, config: Config) -> Reader:
        if config.categories:
            cats = tuple(Category(c.name, c.label_en or c.name, c.team, c.keywords, c.required)
                         for c in config.categories)
        else:
            cats = _builtin_categories()
        systems = tuple(System(s.name, s.aliases) for s in config.systems) or BUILTIN_SYSTEMS
        return cls(cats, systems, config.support.zone)

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

    # ------------------------------------------------------------ reading

    def classify(self, subject: str, text: str, *, now: datetime | None = None
                 ) -> Classification:
        """Category (scored), team, priority and fields of a new request.

        ``text`` is the new text (quoted history already removed); its signature is split
        off here: it gives contact details but its words are not the request's. ``now`` (the
        mail's date, or the clock) reads relative times such as ``昨天下午3点``.
        """
        body, signature = reading.split_signature(text)
        found, sources = self._read(subject, body, signature, now)
        category, scores, why = self._category(subject, body, found)
        priority, priority_why = self._priority(subject, body, found, category)
        return Classification(category.name, category.team, priority, found, why, scores,
                              priority_why, sources)

    def fields(self, text: str, *, now: datetime | None = None) -> dict[str, str]:
        """The details a text gives (``key: value`` lines, table rows, the signature, and
        what can be read without a key), e.g. a requester's reply to a need_info mail."""
        body, signature = reading.split_signature(text)
        return self._read("", body, signature, now)[0]

    def supplement(self, existing: Mapping[str, str], text: str, *,
                   now: datetime | None = None) -> dict[str, str]:
        """What a reply adds to ``existing`` details: what it writes with a key replaces,
        what is only read from its prose (a system it happens to name) fills gaps only."""
        body, signature = reading.split_signature(text)
        found, sources = self._read("", body, signature, now)
        keyed = {"written as a detail", "written in the signature"}
        return {name: value for name, value in found.items()
                if sources.get(name.removesuffix("_text")) in keyed
                or not existing.get(name.removesuffix("_text"))}

    def missing(self, category: str | None, fields: Mapping[str, str]
                ) -> tuple[RequiredField, ...]:
        """The required details of ``category`` that ``fields`` do not give."""
        cat = self.category(category)
        if cat is None:
            return ()
        return tuple(FIELD_CATALOGUE.get(name) or RequiredField(name, name, name, "", "")
                     for name in cat.required if not fields.get(name))

    def _read(self, subject: str, body: str, signature: str, now: datetime | None
              ) -> tuple[dict[str, str], dict[str, str]]:
        found: dict[str, str] = {}
        sources: dict[str, str] = {}
        for where, label in ((body, "written as a detail"),
                             (signature, "written in the signature")):
            for name, value in reading.keyed(where).items():
                if name not in found:
                    found[name], sources[name] = value, label
        guessed = reading.inferred(body, signature, self.systems, subject)
        for name, value in guessed.values.items():
            if name not in found:
                found[name], sources[name] = value, guessed.sources[name]
        for name in _TIME_FIELDS:
            if name in found and (iso := read_time(found[name], self.zone, now)):
                if iso != found[name]:
                    found[f"{name}_text"] = found[name]
                found[name] = iso
        return found, sources

    def _category(self, subject: str, body: str, found: Mapping[str, str]
                  ) -> tuple[Category, dict[str, int], str]:
        body = reading.without_keys(body)
        scores = {c.name: 0 for c in self.categories}
        reasons: dict[str, list[str]] = {c.name: [] for c in self.categories}
        if stated := found.get("category", "").strip():
            cat = self.lookup(stated) or self._best_by_keywords(stated)
            if cat is not None:
                scores[cat.name] += 100
                reasons[cat.name].append(f"field 问题类型: {stated}")
        for tag in _TAG.findall(subject):
            if cat := self.lookup(tag):
                scores[cat.name] += 50
                reasons[cat.name].append(f"subject tag [{tag.strip()}]")
        for cat in self.categories:
            words: list[str] = []
            for where, weight in ((subject, 4), (body, 2)):
                for word in _hits(cat.keywords, where):
                    scores[cat.name] += weight // 2 if word in WEAK_WORDS else weight
                    if word not in words:
                        words.append(word)
            if words:
                reasons[cat.name].append(
                    ("keyword " if len(words) == 1 else "keywords ")
                    + ", ".join(repr(w) for w in words))
        best = max(self.categories, key=lambda c: scores[c.name])  # first of equals wins
        if scores[best.name] == 0:
            default = self.category(DEFAULT_CATEGORY[0]) or self.categories[-1]
            return default, scores, "no keyword matched: default category"
        return best, scores, "; ".join(reasons[best.name])

    def _best_by_keywords(self, text: str) -> Category | None:
        counts = [(len(_hits(c.keywords, text)), -i, c) for i, c in enumerate(self.categories)]
        best = max(counts, key=lambda t: (t[0], t[1]))
        return best[2] if best[0] else None

    def _priority(self, subject: str, body: str, found: Mapping[str, str],
                  category: Category) -> tuple[str, str]:
        if (stated := found.get("priority")) and (level := _level(stated)):
            return level, f"field 优先级: {stated}"
        for tag in _TAG.findall(subject):
            word = tag.strip().lower()
            if level := _TAG_LEVELS.get(word) or (
                    f"P{word[1]}" if re.fullmatch(r"p[0-3]", word) else None):
                return level, f"subject tag [{tag.strip()}]"
        if match := _EXPLICIT_PRIORITY.search(subject):
            return f"P{match.group(1)}", f"subject names P{match.group(1)}"
        if (stated := found.get("urgency")) and (level := _level(stated)):
            return level, f"field 紧急程度: {stated}"
        haystack = _CALM.sub(" ", f"{subject}\n{body}\n{found.get('impact', '')}")
        single = _SINGLE_USER.search(haystack)
        for level, meaning, words in _CRITERIA:
            if single and level in ("P0", "P1"):
                continue
            if hits := _hits(words, haystack):
                return level, f"{meaning} ({hits[0]!r})"
            if level == "P1" and (group := _GROUP_WIDE.search(haystack)):
                return level, f"{meaning} ({group.group(0)!r})"
            for match in _HEADCOUNT.finditer(haystack):
                count = int(match.group(1))
                if (level == "P0" and count >= 50) or (level == "P1" and 3 <= count < 50):
                    return level, f"{meaning} ({match.group(0).strip()!r})"
        if calm := _CALM.search(f"{subject}\n{body}"):
            return "P3", f"not urgent ({calm.group(0)!r})"
        default = _DEFAULT_PRIORITY.get(category.name, DEFAULT_PRIORITY)
        return default, f"default for {category.name}"
