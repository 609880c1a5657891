"""A reproducible corpus of support mail for the backlog benchmarks.

Roots are new requests from a pool of requesters (Chinese and English, some with details a
category asks for); a third of the mails are replies to an earlier root of the same corpus
(``In-Reply-To`` / ``References`` / ``Re:``), so they join that ticket as follow-ups. About one
mail in ten carries an attachment (mostly 20-300 KB, one in seven 1-3 MB); ``--big N`` adds N
attachments of 10-25 MB (the memory test). The same ``--seed`` gives the same bytes.

    .venv/bin/python bench/corpus.py --mails 1000 --out /tmp/corpus   # writes 000001.eml ...
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

SUBJECTS_ZH = ("OA 无法登录", "打印机无法打印", "邮箱收不到邮件", "VPN 连接失败", "财务系统报错",
               "电脑蓝屏", "共享盘无法访问", "会议室投影仪故障")
SUBJECTS_EN = ("Cannot log in to OA", "Printer offline", "No new mail since this morning",
               "VPN keeps dropping", "Finance system error 500", "Laptop blue screen",
               "Shared drive not reachable", "Projector in room 3 broken")
BODY_ZH = ("您好，\n\n{subject}，从今天上午开始就这样了。\n系统: OA\n"
           "影响范围: 财务部 {n} 人\n\n谢谢\n")
BODY_EN = ("Hello,\n\n{subject} since this morning; {n} people in accounting are affected.\n"
           "System: OA\nImpact: accounting\n\nThanks\n")


def generate(mails: int, *, seed: int = 15, reply_share: float = 1 / 3,
             attachment_share: float = 0.1, max_attachment: int = 3_000_000,
             big: int = 0) -> Iterator[bytes]:
    """``mails`` raw messages, deterministic for a seed."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
    roots: list[tuple[str, str, str, str]] = []   # (message-id, subject, name, email)
    big_at = set(rng.sample(range(mails), big)) if big else set()
    for n in range(mails):
        msg = EmailMessage()
        when = start + timedelta(seconds=30 * n)
        chinese = rng.random() < 0.5
        if roots and rng.random() < reply_share:
            parent_id, subject, name, email = rng.choice(roots)
            msg["Subject"] = f"Re: {subject}"
            msg["In-Reply-To"] = f"<{parent_id}>"
            msg["References"] = f"<{parent_id}>"
            text = ("补充一下：问题还在。\n" if chinese else "Still happening, any news?\n") + \
                f"\n> {subject}\n> (earlier mail)\n"
        else:
            person = rng.randrange(2000)
            name = f"用户{person}" if chinese else f"User {person}"
            email = f"user{person}@corp.example"
            subject = rng.choice(SUBJECTS_ZH if chinese else SUBJECTS_EN) + f" #{n}"
            msg["Subject"] = subject
            text = (BODY_ZH if chinese else BODY_EN).format(subject=subject, n=rng.randint(2, 40))
        message_id = f"bench.{seed}.{n}@client.example"
        msg["From"] = f"{name} <{email}>"
        msg["To"] = "Support <support@corp.example>"
        msg["Date"] = format_datetime(when)
        msg["Message-ID"] = f"<{message_id}>"
        msg.set_content(text * rng.randint(1, 6))
        if n in big_at:
            size = rng.randint(10_000_000, 25_000_000)
            msg.add_attachment(rng.randbytes(size), maintype="application",
                               subtype="octet-stream", filename=f"dump-{n}.bin")
        elif rng.random() < attachment_share:
            size = rng.randint(20_000, 300_000) if rng.random() < 0.85 else \
                rng.randint(max_attachment // 3, max_attachment)
            msg.add_attachment(rng.randbytes(size), maintype="application", subtype="pdf",
                               filename=f"截图-{n}.pdf" if chinese else f"report-{n}.pdf")
        if "In-Reply-To" not in msg:
            roots.append((message_id, subject, name, email))
        yield msg.as_bytes().replace(b"\n", b"\r\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--big", type=int, default=0, help="attachments of 10-25 MB to add")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for n, raw in enumerate(generate(args.mails, seed=args.seed, big=args.big), 1):
        (args.out / f"{n:06d}.eml").write_bytes(raw)
        total += len(raw)
    print(f"{args.mails} mails, {total / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
