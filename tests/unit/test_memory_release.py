"""``memory.release_big_buffers``: after it, big buffers freed leave the process (glibc).

A fresh interpreter frees 40 MB once (which, by default, moves glibc's mmap threshold up to
40 MB), then allocates and frees 9 MB of "mail" eighty times with a small survivor after
each: with the setting, the process is no bigger afterwards.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

from daemon.memory import release_big_buffers

PROBE = """
import sys
from daemon.memory import release_big_buffers
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
took = release_big_buffers()
base = rss()
warm = bytes(40 * 1024 * 1024); del warm
keep = []
for i in range(80):
    big = [bytes(3 * 1024 * 1024) for _ in range(3)]
    keep.append(bytearray(1000))
    del big
print(took, rss() - base)
"""


def test_freed_mail_sized_buffers_leave_the_process() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    took, grown = out.stdout.split()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert took == "True"
        assert float(grown) < 2.0, f"{grown} MiB still held after the buffers were freed"
    else:
        assert took == "False"


def test_it_is_harmless_to_ask_twice() -> None:
    assert release_big_buffers() == release_big_buffers()
