"""How long from a mail landing in the mailbox to its acceptance arriving at the SMTP server?

Starts a private Dovecot and an aiosmtpd sink (the test servers), runs `ticketd run` as a
subprocess with the poll 600 s away (so only IDLE can bring the mail in), appends `--mails`
messages one at a time and prints each latency and the median.

    .venv/bin/python bench/idle_latency.py --mails 5

The tests assert that IDLE delivers, not how fast: a timing belongs here, where a loaded
machine makes a slow number, not a red build.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests import messages
from tests.servers.dovecot import Dovecot
from tests.servers.smtp import SmtpSink

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "bench", "bench-pass"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Dovecot({USER: PASSWORD}) as imap, \
            SmtpSink() as sink:
        folder = Path(tmp)
        config = folder / "config.toml"
        config.write_text(
            '[support]\naddress = "support@corp.example"\n'
            f'[database]\nurl = "sqlite:///{folder / "t.db"}"\n'
            f'[imap]\nhost = "{imap.host}"\nport = {imap.port}\nsecurity = "none"\n'
            f'username = "{USER}"\npassword_env = "BENCH_IMAP_PW"\npoll_interval = 600\n'
            f'[smtp]\nbackend = "smtp"\nhost = "{sink.host}"\nport = {sink.port}\n'
            'security = "none"\n', encoding="utf-8")
        log = folder / "ticketd.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(config), "run"],
                env={**os.environ, "PYTHONPATH": str(REPO), "BENCH_IMAP_PW": PASSWORD},
                stdout=out, stderr=subprocess.STDOUT)
        try:
            while "waiting for mail with IDLE" not in log.read_text(errors="replace"):
                if proc.poll() is not None:
                    sys.exit(log.read_text(errors="replace"))
                time.sleep(0.05)
            latencies = []
            for n in range(args.mails):
                started = time.monotonic()
                imap.append(USER, messages.mail(sender=f"u{n}@corp.example",
                                                message_id=f"<bench.{n}.{time.time()}@x>"))
                sink.wait_for(n + 1, timeout=60)
                latencies.append(time.monotonic() - started)
                print(f"mail {n + 1}: {latencies[-1]:.2f} s")
            print(f"median {statistics.median(latencies):.2f} s over {args.mails} mails")
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
