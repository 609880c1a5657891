"""The reader: fields where people write them, scored categories, priority, times."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from daemon.classify import Reader, field_label, field_lines
from daemon.config import CategoryConfig, Config, SupportConfig, SystemConfig
from daemon.fields import keyed, split_signature
from daemon.readtime import read_time

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2023, 10, 27, 10, 30, tzinfo=SHANGHAI)  # a Friday
READER = Reader.from_config(Config())


# ---------------------------------------------------------------- the defects of issue 11

def test_a_greeting_ending_in_a_colon_does_not_swallow_the_first_field() -> None:
    assert keyed("您好：\n系统：CRM\n") == {"system": "CRM"}
    found = READER.classify("CRM 报错", "您好：\n系统：CRM\n点击提交审批后页面提示未知错误\n")
    assert found.fields["system"] == "CRM"
    assert READER.missing(found.category, found.fields) == ()


@pytest.mark.parametrize(("subject", "text", "not_category"), [
    ("Cannot download the invoice PDF", "It fails every time.", "系统故障"),
    ("请回电", "我的手机 13850212345，报表导出失败", "系统故障"),
    ("Accounting report", "The accounting report totals are wrong.", "权限申请"),
])
def test_substrings_of_words_and_numbers_do_not_misroute(subject: str, text: str,
                                                         not_category: str) -> None:
    found = READER.classify(subject, text)
    assert found.category != not_category
    assert found.scores[not_category] == 0


@pytest.mark.parametrize(("subject", "text", "category"), [
    ("Access", "please grant me read/write access to the finance shared folder", "权限申请"),
    ("邮件问题", "手机上无法同步邮件", "功能异常"),
    ("Cannot download the invoice PDF", "", "功能异常"),
])
def test_categories_the_old_table_missed(subject: str, text: str, category: str) -> None:
    assert READER.classify(subject, text).category == category


@pytest.mark.parametrize("text", [
    "工号：A1234", "员工编号: A1234", "Employee ID: A1234", "Employee No. A1234", "工号 A1234",
    "【工号】A1234", "工号 - A1234", "工号 = A1234", "工号    A1234", "工号\tA1234",
])
def test_key_variants_map_to_one_canonical_name(text: str) -> None:
    assert keyed(text) == {"employee_id": "A1234"}


def test_the_standards_fields_are_captured() -> None:
    text = ("姓名：王强\n部门：财务部\n公司：某某科技\n联系电话：13900001111\n"
            "客户编号：C-1002\n发生时间：2023-10-27 10:15\n期望解决时间：今天18:00\n"
            "紧急程度：高\n问题类型：功能异常\n")
    assert READER.fields(text, now=NOW) == {
        "name": "王强", "department": "财务部", "company": "某某科技", "phone": "13900001111",
        "customer_id": "C-1002", "occurred_at": "2023-10-27T10:15:00+08:00",
        "occurred_at_text": "2023-10-27 10:15", "expected_by": "2023-10-27T18:00:00+08:00",
        "expected_by_text": "今天18:00", "urgency": "高", "category": "功能异常"}


def test_several_details_on_one_line() -> None:
    assert keyed("系统：OA；部门：财务部，联系人：黄丽 分机 3302") == {
        "system": "OA", "department": "财务部", "name": "黄丽", "phone": "3302"}


def test_an_outlook_table_row_as_text() -> None:
    text = "详情如下：\n\n系统     Outlook 2016\n影响范围   仅本人\n发生时间：  2023-10-27 10:15\n"
    assert keyed(text) == {"system": "Outlook 2016", "impact": "仅本人",
                           "occurred_at": "2023-10-27 10:15"}


def test_prose_with_two_spaces_is_not_a_table_row() -> None:
    assert keyed("The system  is slow today.\nWe tried  error again.") == {}


def test_the_signature_gives_phone_and_department_but_no_keywords() -> None:
    text = "报表导出的数据不对，请帮忙看看。\n\n谢谢\n王强 13900001111\n财务部"
    body, signature = split_signature(text)
    assert body == "报表导出的数据不对，请帮忙看看。"
    assert signature.startswith("谢谢")
    found = READER.classify("报表数据", text)
    assert (found.fields["phone"], found.fields["department"]) == ("13900001111", "财务部")
    assert found.field_sources["phone"] == "the signature"


def test_a_tel_line_in_an_english_signature() -> None:
    found = READER.fields("The VPN keeps dropping.\n\nBest regards\nTom\nTel: +86 10 5555 0100")
    assert found["phone"] == "+86 10 5555 0100"


def test_details_written_as_prose_are_not_asked_for() -> None:
    outage = READER.classify("OA 打不开", "OA 从早上开始打不开，影响全公司。")
    assert (outage.fields["system"], READER.missing(outage.category, outage.fields)) == ("OA", ())
    access = READER.classify("Permission request: SAP", "I am in the Finance department.")
    assert access.fields["system"] == "SAP"
    assert READER.missing(access.category, access.fields) == ()


def test_what_is_truly_absent_is_asked_for() -> None:
    found = READER.classify("系统崩溃", "又崩溃了")
    assert [f.name for f in READER.missing(found.category, found.fields)] == ["system", "impact"]


def test_a_reply_adds_keyed_details_and_fills_gaps_with_what_it_only_names() -> None:
    existing = {"system": "CRM"}
    assert READER.supplement(existing, "我已经用邮件发过截图了。影响全部门。") == {
        "impact": "影响全部门。"}
    assert READER.supplement(existing, "系统：OA") == {"system": "OA"}


# ---------------------------------------------------------------- scores and priority

def test_every_category_is_scored_and_the_subject_weighs_more() -> None:
    found = READER.classify("申请 CRM 权限", "登录后报错")
    assert found.category == "权限申请"
    assert set(found.scores) == {c.name for c in READER.categories}
    assert found.scores["权限申请"] > found.scores["功能异常"] > 0


def test_an_explicit_field_and_a_subject_tag_win() -> None:
    assert READER.classify("系统打不开", "问题类型: 权限申请").category == "权限申请"
    assert READER.classify("[需求开发] 系统打不开", "").category == "需求开发"
    assert READER.classify("Access needed", "Category: Feature request").category == "需求开发"


@pytest.mark.parametrize(("subject", "text", "priority"), [
    ("[P0] 打印机卡纸", "", "P0"),
    ("【紧急】报表不对", "", "P0"),
    ("报表不对", "优先级：低", "P3"),
    ("报表不对", "紧急程度：高", "P1"),
    ("ERP 宕机", "全公司都无法下单", "P0"),
    ("CRM 报表模块打不开", "销售部 6 人受影响", "P1"),
    ("CRM 报表模块打不开", "整个采购部都用不了", "P1"),
    ("电脑蓝屏", "只有我的电脑这样，很急", "P2"),
    ("报表数据不对", "", "P2"),
    ("请问如何导出报表", "", "P3"),
    ("报表数据不对", "不紧急，有空看看", "P3"),
])
def test_priority(subject: str, text: str, priority: str) -> None:
    found = READER.classify(subject, text)
    assert found.priority == priority, found.priority_why
    assert found.priority_why


# ---------------------------------------------------------------- times

@pytest.mark.parametrize(("text", "iso"), [
    ("2023-10-27 10:15", "2023-10-27T10:15:00+08:00"),
    ("2023/10/27", "2023-10-27"),
    ("2023年10月27日上午9点半", "2023-10-27T09:30:00+08:00"),
    ("今天14:00", "2023-10-27T14:00:00+08:00"),
    ("昨天下午3点", "2023-10-26T15:00:00+08:00"),
    ("10/27 9:00", "2023-10-27T09:00:00+08:00"),
    ("10月30日前", "2023-10-30"),
    ("下周一", "2023-10-30"),
    ("yesterday 3pm", "2023-10-26T15:00:00+08:00"),
    ("14:00", "2023-10-27T14:00:00+08:00"),
    ("尽快", None),
    ("ASAP", None),
])
def test_times_are_read_in_the_support_zone(text: str, iso: str | None) -> None:
    assert read_time(text, SHANGHAI, NOW) == iso


def test_relative_times_need_a_reference_and_keep_the_text_without_one() -> None:
    assert read_time("昨天下午3点", SHANGHAI) is None
    assert read_time("2023-10-27 10:15", SHANGHAI) == "2023-10-27T10:15:00+08:00"
    assert READER.fields("发生时间：昨天下午3点") == {"occurred_at": "昨天下午3点"}


def test_the_zone_comes_from_the_config() -> None:
    reader = Reader.from_config(Config(support=SupportConfig(timezone="Europe/Berlin")))
    assert reader.fields("发生时间：2023-10-27 10:15")["occurred_at"] == (
        "2023-10-27T10:15:00+02:00")


# ---------------------------------------------------------------- configured tables

def test_configured_systems_and_categories() -> None:
    config = Config(
        categories=(CategoryConfig("硬件报修", "Hardware", "ops", ("坏了", "broken"),
                                   ("system",)),
                    CategoryConfig("其他", "Other", "ops", (), ())),
        systems=(SystemConfig("Kingdee", ("金蝶", "K3")),))
    reader = Reader.from_config(config)
    found = reader.classify("金蝶 K3 坏了", "")
    assert (found.category, found.fields["system"]) == ("硬件报修", "Kingdee")
    assert reader.classify("hello", "").category == "其他"  # the last is the default
    assert reader.lookup("hardware") is reader.category("硬件报修")


# ---------------------------------------------------------------- labels

def test_labels_for_tickets_show() -> None:
    assert (field_label("employee_id", "zh-CN"), field_label("employee_id", "en")) == (
        "工号", "Employee ID")
    assert field_lines({"occurred_at": "2023-10-26T15:00:00+08:00",
                        "occurred_at_text": "昨天下午3点", "system": "OA", "x": "y"},
                       "zh-CN") == ["系统: OA", "发生时间: 2023-10-26T15:00:00+08:00 (昨天下午3点)",
                                    "x: y"]
