"""CPU seconds and peak memory of parsing each hostile mail of issue 13, at full size.

    .venv/bin/python bench/hostile.py [NAME ...]

Each mail runs in its own subprocess so the resident set size (ru_maxrss) is that mail's alone;
the tracemalloc peak is printed beside it. The suite (tests/hostile) asserts scaled-down limits.
"""

from __future__ import annotations

import subprocess
import sys

CASES = {
    "encoded_words": "mails.encoded_word_subject(100_000)",
    "subject_10mb": "mails.long_subject(10 * 1024 * 1024)",
    "cc_10000": "mails.many_addresses(10_000, b'Cc')",
    "from_10000": "mails.many_addresses(10_000, b'From')",
    "fields_100000": "mails.many_headers(100_000)",
    "body_50mb": "mails.large_body(50 * 1024 * 1024)",
    "attachment_30mb": "mails.large_attachment(30 * 1024 * 1024)",
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


def main(names: list[str]) -> None:
    for name in names or list(CASES):
        code = CHILD.replace("BUILD", CASES[name])
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=False)
        print(f"{name:16} {out.stdout.strip() or out.stderr.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main(sys.argv[1:])
