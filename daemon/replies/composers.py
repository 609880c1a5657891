"""Who writes a queued mail's bytes: this process, or a worker process beside it.

The outbox hands each claimed row's :class:`~daemon.replies.writer.Job` to a :class:`Composer`
and stores what comes back; every database write stays in the calling process. Two
implementations of the one protocol:

* :class:`InProcess` writes with the app's template store (hot reload, last-good fallback,
  ``ticketd status`` sees a broken template) one job at a time. ``ticketd outbox flush``,
  ``resend`` and the tests use it.
* :class:`WorkerPool` writes in a ``ProcessPoolExecutor`` (``forkserver``: no copy of the
  parent's database connections or threads), so composing uses another core while this one
  ingests or sends. :meth:`Composer.prepare` submits jobs ahead; :meth:`Composer.write` takes
  the job's result (or writes it here when the worker died). The worker builds its own
  template store for the template directory and locale each job names; a broken template
  is reported through the result's ``fallback`` (the ticket's ``mail-template-fallback``
  event); ``ticketd status`` checks the files themselves, wherever mail is written.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from daemon.replies import templates
from daemon.replies.templates import TemplateStore
from daemon.replies.writer import Job, Unwritable, Written, write

if TYPE_CHECKING:  # the worker process imports this module: no database, no SQLAlchemy
    from daemon.app import App

log = logging.getLogger("ticketd.outbox")

__all__ = ["Composer", "InProcess", "WorkerPool"]


class Composer(Protocol):
    """Writes jobs' mails. ``prepare`` may start on jobs early; ``write`` returns one's mail."""

    def prepare(self, jobs: Iterable[Job]) -> None: ...

    def write(self, job: Job) -> Written | Unwritable: ...


class InProcess:
    """Writes each job when asked, with the app's own template store."""

    def __init__(self, app: App) -> None:
        self._store = templates.store(app)

    def prepare(self, jobs: Iterable[Job]) -> None:
        """Nothing to start: :meth:`write` does the work."""

    def write(self, job: Job) -> Written | Unwritable:
        return write(job, self._store)


# A worker's template stores, one per (site directory, default locale), kept for the life of
# the worker so hot reload and the last-good fallback work there as in the main process.
_WORKER_STORES: dict[tuple[str, str], TemplateStore] = {}


def _write_in_worker(job: Job) -> Written | Unwritable:
    key = (job.templates_dir, job.default_locale)
    store = _WORKER_STORES.get(key)
    if store is None:
        store = _WORKER_STORES[key] = TemplateStore(Path(key[0]), key[1])
    return write(job, store)


class WorkerPool:
    """Writes jobs in worker processes, ahead of when they are needed. Close it when done."""

    def __init__(self, app: App, workers: int = 1) -> None:
        context = multiprocessing.get_context("forkserver")
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        self._pending: dict[int, Future[Written | Unwritable]] = {}
        self._app = app
        self._broken = False
        self._local: InProcess | None = None

    def prepare(self, jobs: Iterable[Job]) -> None:
        if self._broken:
            return
        for job in jobs:
            if job.row_id not in self._pending:
                try:
                    self._pending[job.row_id] = self._pool.submit(_write_in_worker, job)
                except BrokenProcessPool as exc:
                    self._give_up(exc)
                    return

    def write(self, job: Job) -> Written | Unwritable:
        future = self._pending.pop(job.row_id, None)
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool as exc:
                self._give_up(exc)
        # Not handed over, or the worker died (no fault of the mail): write it here.
        if self._local is None:
            self._local = InProcess(self._app)
        return self._local.write(job)

    def _give_up(self, exc: BaseException) -> None:
        """A dead worker: log it once; every mail is written in this process from now on."""
        if not self._broken:
            log.error("composing worker failed (%s); mails are written in this process", exc)
        self._broken = True
        self._pending.clear()

    def wait(self) -> None:
        """Block until every job handed over so far is written (tests; a last batch)."""
        wait(list(self._pending.values()))

    def take_done(self) -> list[Written | Unwritable]:
        """The mails written so far and not yet taken (a worker's failure: written here)."""
        done = [row_id for row_id, f in self._pending.items() if f.done()]
        results = []
        for row_id in done:
            future = self._pending.pop(row_id, None)
            if future is None:
                break  # given up: the rest is written at send time
            try:
                results.append(future.result())
            except BrokenProcessPool as exc:
                self._give_up(exc)
        return results

    def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
