"""Run ``ticketd ingest FILE`` in a child process and read its peak memory and CPU time.

Why a child process: the resident set size the issue sets a goal for (< 250 MB per mail) is a
whole process's, interpreter and imports included, and only a fresh process has a peak that
belongs to one mail. The child reads its own high-water mark (VmHWM) and CPU seconds at exit
(:mod:`tests.hostile.peak`), so nothing is sampled and nothing sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    peak_rss: int           # bytes: the child's VmHWM (ru_maxrss)
    cpu: float              # seconds of user + system CPU, start-up included
    status: int             # exit status
    results: list[dict[str, Any]]  # the --json lines
    stderr: str

    @property
    def peak_mib(self) -> float:
        return self.peak_rss / MIB


def write_site(folder: Path, database_url: str, max_attachment_bytes: int = 40 * MIB) -> Path:
    """A config.toml for the child: the given database, attachments and outbox in ``folder``
    (one attachment may be ``max_attachment_bytes``)."""
    config = folder / "config.toml"
    config.write_text(
        '[support]\naddress = "support@corp.example"\nname = "Corp Support"\n'
        f'[database]\nurl = "{database_url}"\n'
        f'[attachments]\ndir = "{folder / "attachments"}"\n'
        f'max_bytes = {max_attachment_bytes}\n'
        f'[smtp]\nbackend = "file"\nfile_dir = "{folder / "outbox"}"\n',
        encoding="utf-8")
    return config


def ingest_measured(config: Path, mail_file: Path, timeout: float = 120) -> Measured:
    """``ticketd --config CONFIG ingest --json MAIL_FILE`` in a child (through
    :mod:`tests.hostile.peak`, which reports the child's own VmHWM and CPU seconds)."""
    peak_file = mail_file.with_suffix(".peak")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TICKETD_PEAK_FILE": str(peak_file)}
    env.pop("TICKETD_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.hostile.peak", "--config", str(config), "ingest",
         "--json", str(mail_file)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout, check=False)
    peak = json.loads(peak_file.read_text(encoding="utf-8"))
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return Measured(int(peak["peak_rss"]), float(peak["cpu"]), done.returncode, lines,
                    done.stderr)
