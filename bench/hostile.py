"""CPU seconds and peak memory of each hostile mail of issue 13, at full size.

    .venv/bin/python bench/hostile.py [NAME ...]             # parse() alone
    .venv/bin/python bench/hostile.py --ingest [NAME ...]    # `ticketd ingest` of the mail

Each mail runs in its own subprocess so the resident set size is that mail's alone. Parse
alone: ru_maxrss and the tracemalloc peak of ``parse(raw)`` (the mail is built in the same
process). ``--ingest``: the whole pipeline as ``ticketd ingest FILE`` (SQLite, attachments to
the store, the acceptance written out) in a fresh process whose own VmHWM is read at exit
(``tests/hostile/measure.py``, the same helper ``tests/hostile/test_memory.py`` asserts
with).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {
    "encoded_words": "mails.encoded_word_subject(100_000)",
    "subject_10mb": "mails.long_subject(10 * 1024 * 1024)",
    "cc_10000": "mails.many_addresses(10_000, b'Cc')",
    "from_10000": "mails.many_addresses(10_000, b'From')",
    "fields_100000": "mails.many_headers(100_000)",
    "body_50mb": "mails.large_body(50 * 1024 * 1024)",
    "attachment_30mb": "mails.large_attachment(30 * 1024 * 1024)",
    "parts_20000": "mails.many_parts(20_000)",
    "nesting_200": "mails.deep_nesting(200)",
    "part_header_5mb": "mails.huge_part_header(5 * 1024 * 1024)",
}

CHILD = """
import resource, time, tracemalloc
from tests.hostile import mails
from daemon.intake.parse import parse
raw = BUILD
tracemalloc.start()
start = time.process_time()
mail = parse(raw)
cpu = time.process_time() - start
peak = tracemalloc.get_traced_memory()[1]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{len(raw) / 1e6:8.1f} MB  cpu {cpu:6.2f} s  tracemalloc peak {peak / 1e6:6.0f} MB  "
      f"max RSS {rss / 1e3:6.0f} MB  defects {len(mail.defects)}")
"""


def parse_only(name: str) -> str:
    code = CHILD.replace("BUILD", CASES[name])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() or out.stderr.strip().splitlines()[-1]


def ingest(name: str) -> str:
    from tests.hostile import mails  # noqa: F401  (used by eval)
    from tests.hostile.measure import ingest_measured, write_site

    raw = eval(CASES[name])  # a builder call from the table above
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_site(folder, f"sqlite:///{folder / 'bench.db'}")
        mail_file = folder / "mail.eml"
        mail_file.write_bytes(raw)
        measured = ingest_measured(config, mail_file, timeout=600)
    actions = ",".join(str(r.get("action")) for r in measured.results) or "-"
    return (f"{len(raw) / 1e6:8.1f} MB  cpu {measured.cpu:6.2f} s  peak RSS "
            f"{measured.peak_mib:5.0f} MiB  {actions}")


def main(argv: list[str]) -> None:
    whole = "--ingest" in argv
    names = [a for a in argv if a != "--ingest"] or list(CASES)
    for name in names:
        print(f"{name:16} {ingest(name) if whole else parse_only(name)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
