"""The details a request gives, read where people write them (zh/en).

Why this module exists: a service-desk agent finds the system, the impact, a phone number or
the steps in a mail whether the requester wrote ``系统：CRM``, ``【系统】CRM``, an Outlook
table row, a signature line or a plain sentence. Asking again for something the mail already
says is the most irritating mistake a desk can make, so the reading is generous in *where* it
looks and strict in *what* it accepts:

* **Keyed details** (:func:`keyed`): a known key (``KEYS``: Chinese and English variants, each
  mapped to one canonical name) followed by a full- or half-width colon, ``=``, a dash, a
  table gap (two spaces or a tab, as an HTML table reads once turned into text) or inside
  ``【】`` / ``[]``. Several on one line (``系统：OA；部门：财务部``) are separated at the
  next key. The space after a colon never crosses a line break (a greeting ``您好：`` must not
  swallow the next line).
* **The signature** (:func:`split_signature`): the block after ``--``, ``Best regards``,
  ``此致``, ``谢谢`` or a name line gives phone, department and employee number when the body
  does not; its words never count as the request's keywords.
* **Unkeyed details** (:func:`inferred`): a system known to the config, an impact phrase
  (全公司, 3 个人, all users, only me), reproduction steps (a sentence with 点击 / 打开 /
  提交 / when I / after I, or a numbered list), a phone number.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["KEYS", "Details", "System", "inferred", "keyed", "split_signature"]

# Key variants as requesters write them -> the canonical field name. Matched
# case-insensitively; a key is recognised only where a detail can start (start of a line or
# after a separator), so "Downtime:" is not "time:".
KEYS: dict[str, str] = {}
for _name, _variants in {
    "system": ("系统", "所属系统", "系统名称", "涉及系统", "业务系统", "应用系统", "应用",
               "应用名称", "功能模块", "系统模块", "模块", "产品", "软件", "设备", "system",
               "system name", "application", "app", "product", "software", "module",
               "affected system", "service"),
    "impact": ("影响范围", "影响", "影响人数", "影响用户", "受影响范围", "受影响人数",
               "影响程度", "impact", "scope", "affected users", "users affected", "impact scope"),
    "steps": ("复现步骤", "重现步骤", "操作步骤", "步骤", "复现方法", "重现方法", "操作过程",
              "steps", "steps to reproduce", "reproduction steps", "repro steps",
              "how to reproduce", "to reproduce"),
    "department": ("部门", "所在部门", "所属部门", "申请部门", "部门名称", "科室", "department",
                   "dept", "dept.", "division"),
    "company": ("公司", "公司名称", "单位", "所在公司", "单位名称", "company", "company name",
                "organization", "organisation"),
    "phone": ("联系电话", "电话", "手机", "手机号", "手机号码", "电话号码", "分机", "分机号",
              "座机", "联系方式", "联系手机", "办公电话", "phone", "phone number", "tel",
              "tel.", "telephone", "mobile", "mobile phone", "cell", "ext", "ext.",
              "extension", "contact number", "contact phone"),
    "employee_id": ("工号", "员工编号", "员工号", "员工工号", "职工号", "员工id",
                    "employee id", "employee no", "employee no.", "employee number",
                    "staff id", "staff no", "staff no.", "emp id", "emp no"),
    "customer_id": ("客户编号", "客户号", "客户代码", "客户id", "客户编码", "customer id",
                    "customer no", "customer no.", "customer number", "customer code",
                    "client id", "account number"),
    "name": ("姓名", "名字", "申请人", "联系人", "报告人", "提交人", "name", "full name",
             "requester", "contact", "contact person", "applicant"),
    "occurred_at": ("发生时间", "首次出现时间", "出现时间", "故障时间", "问题时间",
                    "开始时间", "首次发生时间", "发现时间", "时间", "occurred at", "occurred",
                    "time", "date/time", "when", "started at", "first seen", "since",
                    "time of occurrence", "start time"),
    "expected_by": ("期望解决时间", "期望完成时间", "期望时间", "要求完成时间", "要求解决时间",
                    "截止时间", "期望处理时间", "希望完成时间", "希望解决时间", "期望开通时间",
                    "希望开通时间", "需要时间", "deadline",
                    "due", "due date", "expected by", "needed by", "resolve by", "need it by",
                    "required by"),
    "urgency": ("紧急程度", "紧急度", "紧急性", "严重程度", "urgency", "severity"),
    "error": ("错误信息", "报错信息", "错误提示", "报错内容", "报错", "提示信息", "错误代码",
              "错误码", "错误", "error", "error message", "error code", "error msg",
              "message shown"),
    "environment": ("环境", "运行环境", "操作系统", "浏览器", "客户端版本", "版本", "电脑型号",
                    "手机型号", "设备型号", "型号",
                    "environment", "os", "browser", "version", "client version", "platform"),
    "expected": ("期望结果", "预期结果", "期望效果", "预期效果", "期望", "expected",
                 "expected result", "expected behaviour", "expected behavior"),
    "priority": ("优先级", "priority"),
    "category": ("问题类型", "问题分类", "类型", "工单类型", "类别", "请求类型", "问题类别",
                 "category", "type", "issue type", "request type", "ticket type"),
}.items():
    for _variant in _variants:
        KEYS[_variant] = _name

# Keys that may be followed by just a space when the value has the field's own shape
# ("工号 A10023", "Tel +86 10 5555 0100").
_SPACED_KEYS = frozenset({"phone", "employee_id", "customer_id"})
_VALUE_SHAPES = {
    "phone": re.compile(r"^[+(]?\d(?:[\d\s()+\-转#xX]{1,}\d)?(?!\w)"),
    "employee_id": re.compile(r"^[A-Za-z]{0,4}-?\d{3,12}\b"),
    "customer_id": re.compile(r"^[A-Za-z]{0,6}-?\d{3,14}\b"),
}

_key_alternation = "|".join(re.escape(k) for k in sorted(KEYS, key=len, reverse=True))
_START = r"(?:^|(?<=[\s;；|,，、(（]))"
_GAP = r"[ \t\u3000]"
# key + separator: colon (either width) / "=" / a dash with spaces / a table gap (2+ spaces
# or a tab). The captured key is looked up in KEYS.
_KEYED = re.compile(
    rf"{_START}[*•·\-]?{_GAP}*(?P<key>{_key_alternation}){_GAP}*"
    rf"(?:[:：=]|{_GAP}+[-–—－]{_GAP}+|\t|{_GAP}{{2,}})",
    re.IGNORECASE | re.MULTILINE)
# 【系统】CRM and [系统] CRM at the start of a line.
_BRACKETED = re.compile(rf"^{_GAP}*[【\[](?P<key>{_key_alternation})[】\]]{_GAP}*(?P<value>\S.*)$",
                        re.IGNORECASE | re.MULTILINE)
# A key alone on its line ("系统：" or a vertical table "系统"), the value on the next line.
_KEY_LINE = re.compile(rf"^{_GAP}*(?P<key>{_key_alternation}){_GAP}*[:：]?{_GAP}*$",
                       re.IGNORECASE | re.MULTILINE)
_SPACED = re.compile(rf"{_START}(?P<key>{_key_alternation}){_GAP}+(?=[A-Za-z+(\d])",
                     re.IGNORECASE | re.MULTILINE)
_MAX_VALUE = 500


def _key_ok(key: str, text: str, start: int) -> bool:
    """ASCII keys must stand alone as words ("ext" is not inside "text")."""
    if not key.isascii():
        return True
    return start == 0 or not text[start - 1].isalnum()


def _clean(value: str) -> str:
    return value.strip().strip("；;|,，").strip()


def _spaced(text: str) -> tuple[str, str, int] | None:
    """A phone or id key followed by a space and a value of its shape (``分机 3302``):
    (name, value, where the key starts)."""
    for spaced in _SPACED.finditer(text):
        name = KEYS[spaced.group("key").lower()]
        shape = _VALUE_SHAPES.get(name)
        shaped = shape.match(text[spaced.end():]) if shape and name in _SPACED_KEYS else None
        if shaped and _key_ok(spaced.group("key"), text, spaced.start("key")):
            return name, shaped.group(0), spaced.start("key")
    return None


def keyed(text: str) -> dict[str, str]:
    """Details written with a key, first occurrence of each canonical name wins."""
    found: dict[str, str] = {}

    def put(name: str, value: str) -> None:
        value = _clean(value)[:_MAX_VALUE]
        if value and name not in found:
            found[name] = value

    for line in text.splitlines():
        hits = [m for m in _KEYED.finditer(line) if _key_ok(m.group("key"), line, m.start("key"))]
        # A key in the middle of a line only counts after a colon-like separator, not a gap,
        # unless it starts the line (a table row); "系统  Outlook" is a row, "the system  is"
        # is prose.
        hits = [m for i, m in enumerate(hits)
                if (i == 0 and not line[:m.start("key")].strip(" \t\u3000*•·-")) or
                re.search(r"[:：=]", m.group(0))]
        for i, match in enumerate(hits):
            end = hits[i + 1].start() if i + 1 < len(hits) else len(line)
            value = line[match.end():end]
            # "联系人：黄丽 分机 3302": a number with its own key ends the value before it.
            if spaced := _spaced(value):
                put(spaced[0], spaced[1])
                value = value[:spaced[2]]
            put(KEYS[match.group("key").lower()], value)
        if not hits and (spaced := _spaced(line)):
            put(spaced[0], spaced[1])
    for bracketed in _BRACKETED.finditer(text):
        put(KEYS[bracketed.group("key").lower()], bracketed.group("value"))
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if (alone := _KEY_LINE.match(line)) and index + 1 < len(lines):
            following = lines[index + 1].strip()
            if following and not _KEY_LINE.match(following) and not _KEYED.match(following):
                put(KEYS[alone.group("key").lower()], following)
    return found


def without_keys(text: str) -> str:
    """``text`` with the keys of its details taken out, values kept: a label such as
    ``错误信息:`` says nothing about the request."""
    text = _BRACKETED.sub(lambda m: m.group("value"), text)
    return _KEYED.sub(lambda m: " " if m.group("key").lower() in KEYS else m.group(0), text)


# ---------------------------------------------------------------- the signature

_SIG_DASHES = re.compile(r"^\s*(?:--\s*|—{2,}|-{3,}|_{3,}|={3,})\s*$")
_CLOSINGS = re.compile(
    r"^\s*(?:best regards|kind regards|warm regards|regards|best wishes|best|thanks|"
    r"thank you|many thanks|thanks in advance|thx|cheers|sincerely|yours sincerely|br|"
    r"此致|敬礼|谢谢|多谢|感谢|非常感谢|万分感谢|谢谢了|谢谢您|谢谢你们|辛苦了|麻烦了|祝好|顺祝商祺|"
    r"顺颂商祺|顺祝|祝工作顺利|sent from my \w+|发自我的\S+|来自\S*手机)"
    r"(?:\s*(?:!|！|,|，|。|\.|~|～|啦|哈|哦|～))*\s*$",
    re.IGNORECASE)
_NAME_LINE = re.compile(r"^\s*[\u4e00-\u9fff]{2,4}(?:\s+.*)?$|^\s*[A-Z][a-z]+(?: [A-Z][a-z]+)?\s*$")
_CONTACTISH = re.compile(r"\d{3,}|部|中心|处|科|组|室|公司|有限|dept|department|team|"
                         r"tel|phone|mobile|手机|电话|分机|ext|@|www\.|工号|employee|"
                         r"manager|经理|主管|专员|总监|engineer|工程师|助理|assistant",
                         re.IGNORECASE)


def split_signature(text: str) -> tuple[str, str]:
    """``text`` as (body, signature): the signature starts at a ``--`` line, a closing
    (``Best regards``, ``此致``, ``谢谢``) or a short name line near the end that only
    contact lines follow. The first line is never a signature."""
    lines = text.splitlines()
    tail_from = max(1, len(lines) - 12)
    for index in range(1, len(lines)):
        line = lines[index]
        if _SIG_DASHES.match(line) or (index >= tail_from and _CLOSINGS.match(line)):
            return "\n".join(lines[:index]).rstrip(), "\n".join(lines[index:]).strip()
    # A name line (王强 / 王强 13900001111 / Tom Baker) followed only by short contact lines.
    for index in range(max(1, len(lines) - 6), len(lines)):
        line = lines[index].strip()
        rest = [x.strip() for x in lines[index + 1:] if x.strip()]
        if (line and _NAME_LINE.match(line) and len(line) <= 40 and not _looks_like_prose(line)
                and all(len(x) <= 60 and _CONTACTISH.search(x) for x in rest)
                and (rest or _CONTACTISH.search(line) or index == len(lines) - 1)):
            return "\n".join(lines[:index]).rstrip(), "\n".join(lines[index:]).strip()
    return text, ""


def _looks_like_prose(line: str) -> bool:
    """A line that reads as a sentence or a detail, never as a name ("影响范围   仅本人")."""
    first = line.split(maxsplit=1)[0]
    return first.lower() in KEYS or bool(
        re.search(r"[，。？！,.?!：:]|的|了|吗|请|我|无法|不能|急", first))


# ---------------------------------------------------------------- details without a key

@dataclass(frozen=True)
class System:
    """A system or product requesters name: ``name`` as stored, the words that name it."""

    name: str
    aliases: tuple[str, ...] = ()

    def words(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Details:
    """What :func:`inferred` found, and the text each value came from (for ``inspect``)."""

    values: dict[str, str]
    sources: dict[str, str]


def word_pattern(word: str) -> str:
    """A regex for ``word``: ASCII on word boundaries (no letter, digit or hyphen adjacent:
    "office" is not in "out-of-office"), anything else as a substring, except that digits
    never touch other digits."""
    escaped = re.escape(word)
    if word.isascii():
        return rf"(?<![A-Za-z0-9_-]){escaped}(?![A-Za-z0-9_-])"
    if word[0].isdigit():
        escaped = r"(?<!\d)" + escaped
    if word[-1].isdigit():
        escaped += r"(?!\d)"
    return escaped


def find_system(text: str, systems: Iterable[System]) -> tuple[str, str] | None:
    """The system named first in ``text``: (its name, the words that named it).

    Earliest mention wins; at one place the longer word ("OA审批" over "OA"), then the system
    whose name sorts first. One scan of ``text`` with :func:`_system_matcher`'s regex."""
    matcher, names = _system_matcher(tuple(systems))
    if matcher is None:
        return None
    match = matcher.search(text)
    if match is None or match.lastindex is None:
        return None
    return names[match.lastindex - 1], match.group(0)


@functools.lru_cache(maxsize=32)
def _system_matcher(systems: tuple[System, ...]) -> tuple[re.Pattern[str] | None,
                                                          tuple[str, ...]]:
    """One regex naming every word of ``systems``, one group per (word, system), longest word
    first, then by system name: at the first place any word matches, the regex takes the
    alternative the ranking picks. Built once per configured tuple of systems."""
    entries = sorted({(-len(word), system.name, word) for system in systems
                      for word in system.words()})
    if not entries:
        return None, ()
    pattern = "|".join(f"({word_pattern(word)})" for _, _, word in entries)
    return re.compile(pattern, re.IGNORECASE), tuple(name for _, name, _ in entries)


_NUMBER = r"(?:\d+|[一二两三四五六七八九十几百千]+)"
_IMPACT = re.compile(
    r"全公司|整个公司|全集团|全体员工|全体同事|全员|所有人|所有同事|所有用户|全部用户|全部同事|"
    r"全部门|整个部门|全组|整个团队|整个组|全楼|整层|整栋|全办公室|整个办公室|多个部门|各部门|"
    r"好几个部门|部门所有人|部门的人都|部门同事都|大家都|同事们都|很多人|很多同事|多名同事|多位同事|"
    r"部分用户|部分同事|所有门店|所有分公司|全国|停线|停产|产线停|"
    r"整个[\u4e00-\u9fff]{1,6}?(?:部门|部|团队|组|中心|办公室|车间|门店)|"
    r"[\u4e00-\u9fff]{1,6}?(?:部门|部|组|中心|车间)(?:全体|全员|所有人|的人都|同事都)|"
    r"客户(?:那边)?(?:都|也)|我的电脑|我电脑|我的笔记本|"
    rf"{_NUMBER}\s*(?:多)?\s*(?:个)?\s*(?:人|位同事|名同事|个同事|名员工|个用户|名用户|个部门|家门店)|"
    r"只有我|仅我|就我一个|只是我|只影响我|我一个人|仅本人|"
    r"(?<![A-Za-z])(?:all (?:users|staff|employees|colleagues)|everyone|everybody|"
    r"the whole (?:company|office|team|department|floor)|entire (?:company|office|team|"
    r"department|floor)|company-wide|organisation-wide|organization-wide|"
    r"\d+\s+(?:users|people|colleagues|staff|employees|persons)|several (?:users|people|"
    r"colleagues|teams)|many (?:users|people|colleagues)|multiple (?:users|people|teams)|"
    r"only me|just me|only my (?:machine|computer|laptop|account)|nobody can|no one can|"
    r"our (?:whole|entire) team|(?:the )?(?:production )?line is stopped|production stopped|"
    r"customers (?:can't|cannot|are unable)|my (?:laptop|computer|pc|machine))(?![A-Za-z])",
    re.IGNORECASE)
_STEP_WORDS = re.compile(
    r"(?<![\d一二三四五六七八九十两几半早晚钟])点(?:击|了|开|进|(?:一下)?[\u4e00-\u9fff“”\"]{1,6}?"
    r"(?:后|就|没|也|时|会))|单击|双击|打开|提交|进入|输入|登录后|登陆后|一登录就|"
    r"(?:登录|登陆|提交|保存|导出|导入|打印|扫描|上传|下载|打开|发送|审批|运行|安装|启动|同步|"
    r"查询)[^，。,.!！？?\n]{0,12}?(?:时|后就|之后)|"
    r"(?<![A-Za-z])(?:when i|after i|whenever i|every time i|each time i|i click|i clicked|"
    r"clicking|i tried to|i try to|on clicking|upon clicking|once i)(?![A-Za-z])",
    re.IGNORECASE)
_NUMBERED = re.compile(r"^\s*(?:\d{1,2}[.、)）]|[（(]\d{1,2}[)）]|[①②③④⑤⑥⑦⑧⑨]|"
                       r"第[一二三四五六七八九]步|step \d)\s*\S", re.IGNORECASE | re.MULTILINE)
_SENTENCES = re.compile(r"[^。！？!?\n]+(?:[。！？!?]|$)|[^\n]+", re.MULTILINE)
_PHONE = re.compile(
    r"(?<![\dA-Za-z])(?:(?:\+?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}|"
    r"\+\d{1,3}(?:[\s-]?\d{1,4}){2,5}|"
    r"\(?0\d{2,3}\)?[\s-]?\d{3,4}[\s-]?\d{3,4}(?:\s*(?:转|ext\.?|x|分机)\s*\d{2,6})?)"
    r"(?![\dA-Za-z])",
    re.IGNORECASE)
_EXTENSION = re.compile(r"(?:分机|转|ext\.?|extension|x)\s*[:：]?\s*(\d{3,6})(?!\d)", re.IGNORECASE)
_DEPARTMENT = re.compile(
    r"(?<![\u4e00-\u9fff])([\u4e00-\u9fffA-Za-z]{1,10}?(?:事业部|部门|中心|部|处|科|办公室|组|课))"
    r"(?=经理|主管|专员|总监|助理|工程师|副总|[^\u4e00-\u9fff]|$)|"
    r"(?<![A-Za-z])((?:[A-Z][A-Za-z&]*\s){0,3}(?:Department|Dept\.?|Division|Team))(?![A-Za-z])")
# A department named alone on a signature line ("Finance | Ext. 6631").
_DEPARTMENT_NAME_EN = re.compile(
    r"^\s*(Finance|Sales|Marketing|HR|Human Resources|IT|Legal|Procurement|Purchasing|"
    r"Operations|Logistics|R&D|Engineering|Customer Service|Admin|Administration|Accounting|"
    r"Treasury|Internal Audit|Production|Quality|QA|Sales Ops|Facilities)\s*(?:[|,/·-]|$)",
    re.MULTILINE)
_DEPARTMENT_IN_BODY = re.compile(
    r"(?:我是|本人是|我们是|我在|我们|本人|来自|申请人[：:]?)([\u4e00-\u9fffA-Za-z]{1,10}?"
    r"(?:事业部|部门|中心|部|处|科|办公室|组))(?:的|新|同事|员工|，|,|。|\s|$)|"
    r"(?<![A-Za-z])(?:in|from|of|join(?:ed)?) the ((?:[A-Za-z&]+\s){1,3}"
    r"(?:department|dept|team|group))(?![A-Za-z])", re.IGNORECASE)
_EMPLOYEE_ID = re.compile(r"(?:工号|员工编号|员工号|employee (?:id|no\.?|number)|staff id)"
                          r"\s*[:：#]?\s*([A-Za-z]{0,4}-?\d{3,12})(?!\d)", re.IGNORECASE)
_NOT_DEPARTMENT = ("全部", "整个", "各部", "多个部", "本部", "这部", "那部", "一部", "全组",
                   "小组", "项目组")


def _sentence_with(pattern: re.Pattern[str], text: str) -> str | None:
    for match in _SENTENCES.finditer(text):
        sentence = match.group(0).strip()
        if sentence and pattern.search(sentence):
            return sentence[:200]
    return None


def _phone(text: str) -> str | None:
    if match := _PHONE.search(text):
        value = match.group(0).strip()
        return value if sum(c.isdigit() for c in value) >= 7 else None
    if match := _EXTENSION.search(text):
        return match.group(0).strip()
    return None


def _department(text: str, *, signature: bool) -> str | None:
    if not signature:
        match = _DEPARTMENT_IN_BODY.search(text)
        if not match:
            return None
        value = (match.group(1) or match.group(2)).strip()
        return None if value.startswith(_NOT_DEPARTMENT) else value
    if named := _DEPARTMENT_NAME_EN.search(text):
        return named.group(1)
    for line in text.splitlines():
        for match in _DEPARTMENT.finditer(line):
            value = (match.group(1) or match.group(2) or "").strip()
            if value and not value.startswith(_NOT_DEPARTMENT):
                return value
    return None


def inferred(body: str, signature: str, systems: Iterable[System],
             subject: str = "") -> Details:
    """Details written without a key: system, impact, steps (from the subject and the body),
    phone, department and employee number (from the body, else the signature)."""
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    systems = tuple(systems)
    if found := find_system(subject, systems) or find_system(body, systems):
        values["system"], sources["system"] = found[0], f"named {found[1]!r}"
    if match := _IMPACT.search(body) or _IMPACT.search(subject):
        sentence = _sentence_with(_IMPACT, body) or match.group(0)
        values["impact"], sources["impact"] = sentence, f"impact phrase {match.group(0)!r}"
    numbered = _NUMBERED.findall(body)
    if len(numbered) >= 2:
        lines = [x.strip() for x in body.splitlines() if _NUMBERED.match(x)]
        values["steps"], sources["steps"] = " ".join(lines)[:500], "a numbered list"
    elif steps := _sentence_with(_STEP_WORDS, body):
        values["steps"], sources["steps"] = steps, "a sentence describing what was done"
    for name, where in (("phone", body), ("phone", signature)):
        if name not in values and (phone := _phone(where)):
            values[name] = phone
            sources[name] = "the signature" if where is signature else "a number in the text"
    for where, is_sig in ((body, False), (signature, True)):
        if "department" not in values and (dept := _department(where, signature=is_sig)):
            values["department"] = dept
            sources["department"] = "the signature" if is_sig else "the text"
    for where in (body, signature):
        if "employee_id" not in values and (match := _EMPLOYEE_ID.search(where)):
            values["employee_id"] = match.group(1)
            sources["employee_id"] = "the signature" if where is signature else "the text"
    return Details(values, sources)
