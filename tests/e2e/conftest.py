"""Helpers for running the real `ticketd` command as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

# str output, or bytes when the input was bytes (`quarantine show`, binary stdin).
Run = Callable[..., subprocess.CompletedProcess[Any]]


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Path:
    """A folder with a minimal config.toml pointing at the test database."""
    (tmp_path / "config.toml").write_text(
        '[support]\naddress = "support@corp.example"\nname = "Corp Support"\n'
        f'[database]\nurl = "{database_url}"\n',
        encoding="utf-8",
    )
    return tmp_path


@pytest.fixture
def ticketd(site: Path) -> Run:
    """Run `python -m daemon ARGS` in the site folder; returns the completed process."""

    def run(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[Any]:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        full_env.pop("TICKETD_CONFIG", None)
        if env and "TICKETD_CONFIG" in env:
            full_env["TICKETD_CONFIG"] = env["TICKETD_CONFIG"]
        return subprocess.run(
            [sys.executable, "-m", "daemon", *args], cwd=cwd or site, env=full_env,
            input=input, capture_output=True, text=not isinstance(input, bytes), timeout=120,
            check=False,
        )

    return run
