"""Our own corpus of real-world breakage (issue 14): one mail per class, asserted field by field.

Each file in ``mail/`` was written for this project (never copied from another project's
fixtures) to show one way real clients and gateways break mail that a person still reads fine
in Thunderbird or Outlook. The file name says the class: 1 senders, 2 header blocks,
3 undeclared 8-bit text, 4 encoded words, 5 CJK edge cases, 6 body versus attachment.
``bench/corpus_score.py tests/realmail/mail`` scores the folder like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.app import App
from daemon.explain import explain, render
from daemon.intake.parse import parse
from daemon.intake.parsed import Address
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail

MAIL = Path(__file__).parent / "mail"


@dataclass(frozen=True)
class Expected:
    author: Address
    subject: str
    new_text: str
    attachments: tuple[tuple[str, str, bool], ...] = ()  # filename, content type, signature
    repairs: tuple[str, ...] = ()   # each must be a charset repair note or a defect
    outcome: str = "created"


EXPECTED: dict[str, Expected] = {
    "1a-sender-trailing-dot.eml": Expected(
        Address("", "mei.lin@mail.client.example"), "Badge reader at the east entrance",
        "Hello,\n\nThe badge reader at the east entrance rejects every card since this "
        "morning.\n\nThanks",
        repairs=("from: salvaged mei.lin@mail.client.example from "
                 "'Mei.Lin@mail.client.example.' (trailing dot)",)),
    "1b-sender-glued-name.eml": Expected(
        Address("facility service", "desk@client.example"), "Heating in room 301",
        "The heating in room 301 is off.",
        repairs=("from: salvaged desk@client.example from 'facility service "
                 "desk@client.example' (display name without quotes or angle brackets)",)),
    "1c-sender-no-brackets.eml": Expected(
        Address("Wang Fang", "wang.fang@client.example"), "VPN drops every hour",
        "My VPN connection drops every hour.",
        repairs=("from: salvaged wang.fang@client.example from 'Wang Fang "
                 "wang.fang@client.example' (display name without quotes or angle brackets)",)),
    "1d-sender-stray-bracket.eml": Expected(
        Address("Help Desk", '"help desk"@client.example'), "Printer toner",
        "Printer P-12 needs toner.",
        repairs=("from: salvaged \"help desk\"@client.example from '\"Help "
                 "Desk\"@client.example>' (quoted local part, stray bracket)",)),
    "1e-sender-bare-mailer-daemon.eml": Expected(
        Address("", "mailer-daemon@mail.client.example"), "Undelivered Mail Returned to Sender",
        "This is the mail system at host mail.client.example.\n\nI'm sorry to have to inform "
        "you that your message could not be delivered to one or more recipients.\n\n"
        "<gone@client.example>: host mx.client.example said: 550 5.1.1 User unknown",
        repairs=("from: salvaged mailer-daemon@mail.client.example from 'MAILER-DAEMON' (bare "
                 "mail-system name, domain mail.client.example taken from the mail)",),
        outcome="bounce"),
    "2a-header-continuation-lost.eml": Expected(
        Address("Li Na", "li.na@client.example"), "Shared drive is read-only",
        "The shared drive S: became read-only.",
        repairs=("header block: 1 continuation line without leading whitespace joined to the "
                 "header above",)),
    "2b-junk-before-headers.eml": Expected(
        Address("Li Na", "li.na@client.example"), "Projector in meeting room B",
        "The projector in room B shows no image.",
        repairs=("header block: 2 junk lines before the first header skipped (From "
                 "li.na@client.example Mon Nov  6 09:15:00 2023 | )",)),
    "2c-text-before-headers.eml": Expected(
        Address("Zhou Jie", "zhou.jie@client.example"), "Password reset link expired",
        "The reset link expired before I used it.",
        repairs=("header block: 1 junk line before the first header skipped (--- forwarded by "
                 "the old helpdesk ---)",)),
    "3a-gb2312-raw-subject.eml": Expected(
        Address("刘洋", "liu.yang@client.example"), "转发：绩效管理办法修订稿",
        "FYI, see the forwarded mail.",
        attachments=(("绩效管理办法修订稿.eml", "message/rfc822", False),),
        repairs=("subject: no charset declared, detected as gb18030",
                 "from: no charset declared, detected as gb18030")),
    "3b-gbk-raw-filename.eml": Expected(
        Address("Liu Yang", "liu.yang@client.example"), "Appraisal rules", "请查收附件。",
        attachments=(("绩效管理办法.xls", "application/vnd.ms-excel", False),),
        repairs=("attachment name, part 2: no charset declared, decoded as gb18030 (charset "
                 "of the same message)",)),
    "3c-latin1-raw-name.eml": Expected(
        Address("Jörg Hofjäger", "j.hofjaeger@client.example"),
        "Grüße – neue Adresse: Hofjägeralle 12",
        "Bitte die Lieferadresse auf Hofjägeralle 12 ändern.",
        repairs=("from: no charset declared, detected as windows-1252",
                 "subject: no charset declared, decoded as utf-8 with 1 stray byte read as "
                 "windows-1252")),
    "4a-encoded-words-with-spaces.eml": Expected(
        Address("Pat Doe", "pat.doe@client.example"), "Ticket ABC / 123 / West",
        "Door sensor West wing."),
    "4b-encoded-words-split-and-mixed.eml": Expected(
        Address("Jürgen", "juergen@client.example"), "Antrag: Personaländerung – Müller Grüße",
        "Bitte die Personalnummer ändern."),
    "5a-iso2022jp-cp50221.eml": Expected(
        Address("佐藤", "sato@client.example"), "①② 会議室 﨑", "①② 会議室 﨑",
        repairs=("subject: iso-2022-jp declared, decoded as cp50221",
                 "part 1 text/plain: iso-2022-jp declared, decoded as cp50221")),
    "5b-iso2022jp-label-sjis-bytes.eml": Expected(
        Address("Sato", "sato@client.example"), "会議室の予約について", "Please see the subject.",
        repairs=("subject: iso-2022-jp declared, decoded as cp932 (the declared charset cannot "
                 "decode the bytes)",)),
    "5c-gbk-body-no-charset.eml": Expected(
        Address("Li Wei", "li.wei@client.example"), "Server down",
        "Hi team,\n\nThe server is down again. 服务器又宕机了，请尽快处理。\n\nThanks\nLi Wei\n"
        "IT Dept, Shanghai office\nTel: +86 21 5555 1234",
        repairs=("part 1 text/plain: no charset declared, detected as gb18030",)),
    "5d-rfc2231-iso2022jp-filename.eml": Expected(
        Address("Sato", "sato@client.example"), "Minutes", "Minutes attached.",
        attachments=(("会議資料①.pdf", "application/pdf", False),),
        repairs=("attachment name, part 2: iso-2022-jp declared, decoded as cp50221",)),
    "6a-inline-named-text.eml": Expected(
        Address("Ops", "ops@client.example"), "Backup failed",
        "Last night's backup failed, log attached.",
        attachments=(("backup.log", "text/plain", False),)),
    "6b-plain-stub-of-html.eml": Expected(
        Address("Accounts", "ap@client.example"), "Invoice run stopped",
        "Dear support,\n\nOur monthly invoice run stopped halfway: 214 of 530 invoices were "
        "created, then the job reported a timeout against the tax service. Could you restart "
        "it and check the remaining ones?\n\nKind regards,\nAccounts payable"),
    "6c-pgp-signed.eml": Expected(
        Address("Kim", "kim@client.example"), "Signed request",
        "Please grant me access to the finance share.",
        attachments=(("signature.asc", "application/pgp-signature", True),)),
}


def test_every_mail_of_the_corpus_has_expectations() -> None:
    assert sorted(p.name for p in MAIL.glob("*.eml")) == sorted(EXPECTED)
    assert {name[0] for name in EXPECTED} == set("123456")  # every class of the issue


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_read_field_by_field(name: str) -> None:
    expected = EXPECTED[name]
    mail = parse((MAIL / name).read_bytes())
    assert mail.from_ == expected.author
    assert mail.subject == expected.subject
    assert mail.new_text == expected.new_text
    assert tuple((a.filename, a.content_type, a.signature) for a in mail.attachments) == \
        expected.attachments
    notes = {f"{n.where}: {n.repair}" for n in mail.charsets if n.repair}
    for repair in expected.repairs:
        assert repair in notes | set(mail.defects), (notes, mail.defects)
    assert "\ufffd" not in mail.subject + mail.new_text + str(mail.from_)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_intake_outcome_and_inspect_names_the_repairs(name: str, app: App) -> None:
    raw = (MAIL / name).read_bytes()
    expected = EXPECTED[name]
    report = render(explain(app, raw, origin=name))
    for repair in expected.repairs:
        assert repair.partition(": ")[2] in report
    result = Intake(app).ingest(RawMail(raw, f"file:{name}"))
    assert result.action == expected.outcome, result
