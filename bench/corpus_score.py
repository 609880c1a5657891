"""How well does ticketd read real mail? Ingest every file of the given folders and count.

    .venv/bin/python bench/corpus_score.py tests/realmail/mail ../shared/corpus/* \
        "$(python3 -c 'import os, test.test_email as t; print(os.path.dirname(t.__file__))')/data" \
        --replies ../shared/corpus/talon

Each folder is ingested, file by file in name order and exactly as ``ticketd ingest FOLDER``
reads it (an mbox file yields its messages), into its own throwaway SQLite database. Printed
per folder: the count of each outcome (created, appended, duplicate, ignored, bounce,
quarantined), each quarantine reason, and the mails that were taken in but read with visible
damage (no author, a replacement character or an undecoded ``=?...?=`` word left in the
subject, the author's name, the new text or an attachment name). ``--verbose`` prints one
line per mail.

Two checks over the corpus make a non-zero exit status:

* ``--replies FOLDER`` (repeatable): the mails of FOLDER are replies whose new text must be
  the content of the file ``<name>_reply_text`` beside them, or ``--reply-text`` ("Hello").
* every mail whose file name starts with ``bounce``, ``complaint`` or ``disposition`` (a
  bounce, an abuse report, a read receipt) must not open a ticket.

No mail is sent (no notifier) and nothing outside the temporary folder is written.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import from_mapping
from daemon.errors import Quarantine
from daemon.intake.parse import parse
from daemon.intake.parsed import ParsedMail
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail, read

_NO_TICKET_PREFIXES = ("bounce", "complaint", "disposition")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?]*\?=")


@dataclass
class FolderScore:
    """The outcomes of one folder."""

    folder: str
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    damaged: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def damage(mail: ParsedMail) -> list[str]:
    """What a reader would see is wrong in a mail that was taken in."""
    found: list[str] = []
    if mail.from_ is None:
        found.append("no author")
    name = mail.from_.name if mail.from_ else ""
    names = " ".join(a.filename for a in mail.attachments)
    for label, text in (("subject", mail.subject), ("author name", name),
                        ("new text", mail.new_text), ("attachment name", names)):
        if "\ufffd" in text:
            found.append(f"U+FFFD in {label}")
        if _ENCODED_WORD.search(text):
            found.append(f"encoded word left in {label}")
    return found


def _origin_name(origin: str) -> str:
    return Path(origin.split(":", 1)[-1].split("#", 1)[0]).name


def score_folder(folder: Path, replies: bool, reply_text: str, verbose: bool) -> FolderScore:
    result = FolderScore(folder.name or str(folder))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        config = from_mapping({"support": {"address": "support@corp.example"},
                               "database": {"url": f"sqlite:///{base / 'score.db'}"},
                               "attachments": {"dir": str(base / "attachments")}},
                              where="corpus_score", base=base)
        app = App(config, clock=FixedClock(datetime(2023, 10, 27, 1, 0, tzinfo=UTC)))
        intake = Intake(app)
        try:
            for raw in read([str(folder)]):
                name = _origin_name(raw.origin)
                if name == "LICENSE" or name.endswith("_reply_text"):
                    continue
                outcome = intake.ingest(raw)
                result.outcomes[outcome.action] += 1
                line = f"  {name}: {outcome.action} {outcome.reason}".rstrip()
                if outcome.action == "quarantined":
                    result.reasons[outcome.reason[:100]] += 1
                    mail = None
                else:
                    try:
                        mail = parse(raw.data)
                    except Quarantine:
                        mail = None
                if mail is not None and outcome.action in ("created", "appended"):
                    hurt = damage(mail)
                    if hurt:
                        result.damaged.append(f"{name}: {', '.join(hurt)}")
                    line += f" | {mail.from_} | {mail.subject[:60]!r}"
                if outcome.action == "created" and name.lower().startswith(_NO_TICKET_PREFIXES):
                    result.failures.append(f"{name}: opened a ticket")
                if replies and mail is not None:
                    expected_file = raw_path(raw).with_name(raw_path(raw).stem + "_reply_text")
                    expected = (expected_file.read_text().strip() if expected_file.exists()
                                else reply_text)
                    if mail.new_text.strip() != expected:
                        result.failures.append(
                            f"{name}: new text {mail.new_text.strip()[:60]!r}, "
                            f"expected {expected[:60]!r}")
                if verbose:
                    print(line)
        finally:
            app.close()
    return result


def raw_path(raw: RawMail) -> Path:
    return Path(raw.origin.split(":", 1)[-1].split("#", 1)[0])


def report(scores: list[FolderScore]) -> str:
    lines: list[str] = []
    total: Counter[str] = Counter()
    for score in scores:
        total.update(score.outcomes)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(score.outcomes.items()))
        lines.append(f"{score.folder}: {sum(score.outcomes.values())} mails: {counts}")
        lines += [f"  quarantined ({n}): {reason}" for reason, n in score.reasons.most_common()]
        lines += [f"  damaged: {entry}" for entry in score.damaged]
        lines += [f"  FAILED: {entry}" for entry in score.failures]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(total.items()))
    lines.append(f"total: {sum(total.values())} mails: {counts}; "
                 f"damaged {sum(len(s.damaged) for s in scores)}, "
                 f"failed checks {sum(len(s.failures) for s in scores)}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--replies", action="append", default=[], type=Path,
                        help="a folder of replies whose new text is checked")
    parser.add_argument("--reply-text", default="Hello",
                        help="the expected new text without a <name>_reply_text file")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # a quarantine is counted here, not logged
    reply_folders = {folder.resolve() for folder in args.replies}
    scores: list[FolderScore] = []
    for folder in args.folders:
        if not folder.is_dir():
            continue
        if args.verbose:
            print(f"{folder}:")
        scores.append(score_folder(folder, folder.resolve() in reply_folders, args.reply_text,
                                   args.verbose))
    print(report(scores))
    return 1 if any(score.failures for score in scores) else 0


if __name__ == "__main__":
    sys.exit(main())
