"""The optional loopback HTTP endpoint of ``ticketd run``: ``/healthz`` and ``/metrics``.

Why a tiny stdlib server and not a framework: two read-only URLs for a local health checker and
a Prometheus scraper do not justify a dependency. It binds to a loopback address only (the
metrics name mailboxes and the health check is unauthenticated): a non-loopback ``[http] host``
is a configuration error. Reverse-proxy it if it must be reached from elsewhere.

* ``GET /healthz`` -> 200 (or 503 when unhealthy) with JSON: ``ok``, the last poll of each
  mailbox, and why it is not ok.
* ``GET /metrics`` -> the Prometheus text format of the service's own registry.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from daemon.app import App
from daemon.config import is_loopback
from daemon.errors import ConfigError
from daemon.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("ticketd.http")

Health = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class HttpSettings:
    """Where to listen; ``port = 0`` picks a free port (tests)."""

    host: str = "127.0.0.1"
    port: int = 9465

    def __post_init__(self) -> None:
        if not is_loopback(self.host):
            raise ConfigError(f'[http] host: expected a loopback address such as "127.0.0.1", '
                              f'got "{self.host}"')


def settings_from(app: App) -> HttpSettings | None:
    """The ``[http]`` section when it is enabled."""
    section = app.config.http
    return HttpSettings(section.host, section.port) if section.enabled else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            try:
                data = self.server.health()
            except Exception as exc:  # the health check must answer, not crash the thread
                log.exception("health check failed")
                data = {"ok": False, "problems": [f"health check failed: {exc}"]}
            body = json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
            self._answer(200 if data.get("ok") else 503, "application/json", body)
        elif path == "/metrics":
            self._answer(200, CONTENT_TYPE, self.server.metrics.render())
        else:
            self._answer(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s - " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], health: Health, metrics: Metrics) -> None:
        self.health = health
        self.metrics = metrics
        super().__init__(address, _Handler)


class HealthServer:
    """The server and its thread; ``start()`` binds at once, so a busy port fails early."""

    def __init__(self, settings: HttpSettings, health: Health, metrics: Metrics) -> None:
        self.settings = settings
        self._health = health
        self._metrics = metrics
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.settings.port

    def start(self) -> None:
        try:
            self._server = _Server((self.settings.host, self.settings.port), self._health,
                                   self._metrics)
        except OSError as exc:
            raise ConfigError(f"[http] port: cannot listen on {self.settings.host}:"
                              f"{self.settings.port}: {exc.strerror}") from exc
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.5},
                                        name="ticketd-http", daemon=True)
        self._thread.start()
        log.info("http endpoint on http://%s:%d/ (/healthz, /metrics)", self.settings.host,
                 self.port)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._server = None
        self._thread = None
