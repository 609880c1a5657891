"""pytest fixtures for the real loopback servers (register with ``pytest_plugins``).

Why a plugin module: the servers are shared by unit, integration and e2e tests, and
``tests/conftest.py`` only has to name this module. Fixtures:

* ``dovecot``: one Dovecot for the session (starting costs ~50 ms, a graceful stop ~1.1 s).
* ``imap``: the same server with ``support``'s mailbox emptied for this test (and restarted
  if an earlier test left it stopped).
* ``smtp_server``: a fresh SMTP sink per test, stopped at teardown.
* ``smtp_server_factory``: build sinks with AUTH (``auth=(user, password)``) or several at once.

Tests using them get the ``imap`` / ``smtp`` markers, so ``-m "not imap"`` deselects them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.servers.dovecot import Dovecot
from tests.servers.smtp import SmtpSink

_IMAP_FIXTURES = frozenset({"dovecot", "imap"})
_SMTP_FIXTURES = frozenset({"smtp_server", "smtp_server_factory"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _IMAP_FIXTURES:
            item.add_marker(pytest.mark.imap)
        if names & _SMTP_FIXTURES:
            item.add_marker(pytest.mark.smtp)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """The session's Dovecot; skipped (failed with CI=true) when Dovecot is not installed."""
    server = Dovecot()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def dovecot_tls() -> Iterator[Dovecot]:
    """A second Dovecot with a self-signed certificate: STARTTLS and implicit TLS."""
    server = Dovecot(tls=True)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def imap(dovecot: Dovecot) -> Dovecot:
    """The session server with ``support`` reset: only INBOX, and it is empty."""
    if not dovecot.running:
        dovecot.start()
    dovecot.reset("support")
    return dovecot


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SmtpSink]]:
    """Start ``SmtpSink(**kwargs)`` instances; all are stopped at teardown."""
    sinks: list[SmtpSink] = []

    def make(**kwargs: Any) -> SmtpSink:
        sink = SmtpSink(**kwargs)
        sink.start()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpSink]) -> SmtpSink:
    """A running SMTP sink without AUTH on 127.0.0.1, fresh for this test."""
    return smtp_server_factory()
