"""Parse the next batch in a worker process while this process writes the current one.

Parsing (:func:`daemon.intake.prepare.prepare`) is pure: bytes in, a
:class:`~daemon.intake.parsed.ParsedMail` (or a quarantine reason) out, nothing read or
written. On a backlog it is a third of the work, and the rest (the database, the process,
composing mail) holds this process's one interpreter lock; a second process gives intake a
second core. :class:`ParseAhead` keeps one batch in flight: :meth:`ParseAhead.submit` hands a
batch to the worker, :meth:`Pending.result` waits for it.

Nothing depends on the worker: a small poll parses in this process (starting a worker costs
more than it saves), and a worker that dies (a message that crashes the interpreter, an
out-of-memory kill) is logged once and the batch is parsed here, where the per-message safety
net quarantines what cannot be parsed. The worker is spawned, never forked: a fork of a
process with threads and open database connections is unsafe.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType

from daemon.intake.parsed import ParsedMail
from daemon.intake.prepare import Prepared, Preparing, prepare
from daemon.intake.sources import RawMail

log = logging.getLogger("ticketd.intake")

WORTH_A_WORKER = 100   # messages waiting: below this, parse in this process
PARSE_WHILE_STARTING = True  # parse here until the worker is ready (tests: wait for it)


Parsed = Prepared | ParsedMail | str


def parse_batch(raws: Sequence[RawMail], how: Preparing) -> list[Parsed]:
    """What the worker runs (and this process, without a worker): each message parsed with
    its pure conclusions (:func:`daemon.intake.prepare.prepare`).

    ``how.reading`` streams large parts into the attachment store (a folder both processes
    share), so what comes back to this process is small."""
    return [prepare(raw, how) for raw in raws]


def _ready() -> None:
    """The worker's first task: done once it has started and imported the parser."""


class Pending:
    """One batch being parsed (or already parsed, without a worker)."""

    def __init__(self, raws: Sequence[RawMail], how: Preparing,
                 future: Future[list[Parsed]] | None,
                 done: list[Parsed] | None = None) -> None:
        self.raws = raws
        self.in_worker = future is not None   # handed to the worker (it may still fail)
        self._how = how
        self._future = future
        self._done = done

    def result(self) -> list[Parsed]:
        if self._done is not None:
            return self._done
        assert self._future is not None
        try:
            self._done = self._future.result()
            log.debug("%d message(s) parsed in the worker", len(self.raws))
        except BrokenProcessPool as exc:
            log.warning("parse worker died (%s); parsing %d message(s) here", exc,
                        len(self.raws))
            self._done = parse_batch(self.raws, self._how)
        return self._done


class ParseAhead:
    """A one-process pool that parses batches ahead; a context manager.

    ``workers=0`` (or :meth:`submit` after the pool broke) parses in this process.
    """

    def __init__(self, how: Preparing, workers: int = 1) -> None:
        self._how = how
        self._pool: ProcessPoolExecutor | None = None
        self._ready: Future[None] | None = None
        if workers > 0:
            self._pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            # A spawned worker takes a few tenths of a second to start and import the parser:
            # until it says it is ready, batches are parsed here rather than waited for.
            self._ready = self._pool.submit(_ready)

    def submit(self, raws: Sequence[RawMail], here: bool = False) -> Pending:
        """The batch, handed to the worker (or parsed here: without a worker, while it
        starts, or when asked: ``here``)."""
        if not PARSE_WHILE_STARTING and self._ready is not None and not here:
            self.wait_ready(timeout=None)
        if not here and self._pool is not None and self._ready is not None \
                and self._ready.done():
            try:
                return Pending(raws, self._how,
                               self._pool.submit(parse_batch, list(raws), self._how))
            except (BrokenProcessPool, RuntimeError) as exc:
                log.warning("parse worker unavailable (%s); parsing here", exc)
                self.close()
        return Pending(raws, self._how, None, parse_batch(raws, self._how))

    def wait_ready(self, timeout: float | None) -> bool:
        """Wait until the worker has started (False: there is none, or it did not start)."""
        if self._ready is None:
            return False
        try:
            self._ready.result(timeout)
        except Exception:
            return False
        return True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ParseAhead:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
