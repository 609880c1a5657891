"""Does memory stay flat while intake runs? Ingest N generated mails in one process and print
the resident set size every `--every` messages.

    .venv/bin/python bench/memory_ingest.py --messages 3000 --every 500

Each mail opens a ticket (with a 200 KB attachment every tenth) and queues an acceptance that
the file transport writes out; the whole pipeline runs as in `ticketd run`. A flat RSS after
the first few hundred messages (caches warm) means no per-message growth.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import from_mapping
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.replies.notify import Notify
from daemon.replies.outbox import flush


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def mail(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"用户{n} <user{n}@corp.example>"
    msg["To"] = "support@corp.example"
    msg["Subject"] = f"系统故障 {n}: OA 无法登录"
    msg["Message-ID"] = f"<bench-{n}@client.example>"
    msg.set_content(f"第 {n} 封。\n系统: OA\n影响范围: 财务部\n" + "正文。" * 200)
    if n % 10 == 0:
        msg.add_attachment(bytes(range(256)) * 800, maintype="application",
                           subtype="octet-stream", filename=f"log-{n}.bin")
    return msg.as_bytes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--every", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg = from_mapping({"support": {"address": "support@corp.example"},
                            "database": {"url": f"sqlite:///{base / 'b.db'}"},
                            "mail": {"auto_reply_limit": 1000000}}, where="bench", base=base)
        app = App(cfg, clock=FixedClock(datetime(2023, 10, 27, 1, 0, tzinfo=UTC)))
        intake = Intake(app, notifier=Notify(app))
        start = time.monotonic()
        print(f"{'messages':>8} {'rss MiB':>8} {'msg/s':>7}")
        for n in range(1, args.messages + 1):
            intake.ingest(RawMail(mail(n), f"bench:{n}"))
            if n % 50 == 0:
                flush(app)
            if n % args.every == 0:
                rate = n / (time.monotonic() - start)
                print(f"{n:>8} {rss_mib():>8.1f} {rate:>7.0f}", flush=True)
        app.close()


if __name__ == "__main__":
    main()
