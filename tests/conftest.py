"""Shared fixtures: databases (SQLite always, PostgreSQL when configured), apps, clocks.

Every storage test takes the ``database_url`` fixture, which runs it on SQLite and, when
``TICKETD_TEST_DATABASE_URL`` is set, again on PostgreSQL in a throwaway schema. Under
``CI=true`` a missing PostgreSQL fails the run instead of quietly testing less.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import Config, from_mapping

pytest_plugins = ["tests.servers.plugin"]

PG_URL = os.environ.get("TICKETD_TEST_DATABASE_URL", "")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI and not PG_URL:
        raise pytest.UsageError(
            "CI=true but TICKETD_TEST_DATABASE_URL is not set: PostgreSQL tests would not run"
        )


def _backends() -> list[str]:
    return ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tickets.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2023, 10, 27, 1, 30, tzinfo=UTC))


def make_config(tmp_path: Path, database_url: str, **sections: dict[str, object]) -> Config:
    data: dict[str, dict[str, object]] = {
        "support": {"address": "support@corp.example", "name": "Corp Support"},
        "database": {"url": database_url},
        "smtp": {"backend": "file", "file_dir": str(tmp_path / "outbox")},
        "attachments": {"dir": str(tmp_path / "attachments")},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return from_mapping(data, where="test.toml", base=tmp_path)


@pytest.fixture
def app(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[App]:
    application = App(make_config(tmp_path, database_url), clock=clock)
    application.ready_db()
    yield application
    application.close()
