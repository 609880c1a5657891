"""How long from an MTA handing a mail over LMTP to its acceptance being queued?

Runs `ticketd lmtp` as a subprocess on a fresh SQLite database, delivers `--mails` messages one
at a time with smtplib.LMTP and times each from the start of the transaction (LHLO) to the
``250`` after DATA, which ticketd gives only once the ticket and its acceptance have committed.

    .venv/bin/python -m bench.lmtp_latency --mails 50
"""

from __future__ import annotations

import argparse
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests import messages
from tests.servers.dovecot import free_port

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = free_port()
        config = folder / "config.toml"
        config.write_text(
            '[support]\naddress = "support@corp.example"\n'
            f'[database]\nurl = "sqlite:///{folder / "t.db"}"\n'
            f'[smtp]\nbackend = "file"\nfile_dir = "{folder / "out"}"\n'
            f'[lmtp]\nport = {port}\n', encoding="utf-8")
        log = folder / "ticketd.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(config), "lmtp"],
                env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=out,
                stderr=subprocess.STDOUT)
        try:
            while "LMTP listening" not in log.read_text(errors="replace"):
                if proc.poll() is not None:
                    sys.exit(log.read_text(errors="replace"))
                time.sleep(0.05)
            latencies = []
            for n in range(args.mails):
                raw = messages.mail(sender=f"u{n}@corp.example",
                                    message_id=f"<lmtp.{n}.{time.time()}@x>")
                started = time.monotonic()
                with smtplib.LMTP("127.0.0.1", port, timeout=30) as lmtp:
                    refused = lmtp.sendmail(f"u{n}@corp.example", ["support@corp.example"], raw)
                latencies.append(time.monotonic() - started)
                assert refused == {}, refused
            cuts = statistics.quantiles(latencies, n=20)
            print(f"{args.mails} mails: p50 {statistics.median(latencies) * 1000:.0f} ms, "
                  f"p95 {cuts[-1] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                  f"(LMTP connect to 250 after commit; load {os.getloadavg()[0]:.1f})")
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
