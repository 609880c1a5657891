"""Cost of writing one outgoing mail: compose() + as_bytes(), per mail, for the two mails every
new ticket queues (the zh-CN acceptance, the handler's ``assigned`` with two attachments).

    .venv/bin/python -m bench.compose_cost --mails 2000
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from daemon.addresses import Address
from daemon.replies import kinds
from daemon.replies.compose import OutgoingAttachment, compose, to_bytes
from daemon.replies.templates import TemplateStore, default_templates_dir

FILES = (OutgoingAttachment("导出按钮截图.png", "image/png", bytes(range(256)) * 960),
         OutgoingAttachment("console-log.txt", "text/plain", b"GET /export 500\n" * 200))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=2000)
    args = parser.parse_args()
    store = TemplateStore(default_templates_dir(), "zh-CN")
    date = datetime(2023, 10, 27, 1, 30, tzinfo=UTC)
    for kind, files in (("acceptance", ()), ("assigned", FILES)):
        rendered = store.render(kind, "zh-CN", kinds.sample(kind, "zh-CN"))
        size = 0
        start = time.perf_counter()
        for i in range(args.mails):
            msg = compose(rendered, sender=Address("IT 服务台", "support@corp.example"),
                          to=[Address("张伟", "zhang.wei@corp.example")],
                          cc=[Address("李娜", "li.na@corp.example")],
                          message_id=f"ticketd.{i:040d}@corp.example",
                          in_reply_to="<req.1@client.example>",
                          references=["<root@client.example>", "<req.1@client.example>"],
                          date=date, auto_submitted=True,
                          loop_header=("X-Ticketd-Loop", "support@corp.example"),
                          attachments=files, max_bytes=20 * 1024 * 1024)
            size = len(to_bytes(msg))
        per = (time.perf_counter() - start) / args.mails * 1000
        print(f"{kind:<10} {per:6.3f} ms per mail (compose + as_bytes), {size} bytes")


if __name__ == "__main__":
    main()
