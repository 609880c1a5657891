"""Polling one IMAP folder: fetch by UID, ingest, and only then move or flag.

The order that makes intake lossless, per batch of up to ``batch_size`` messages:
``BODY.PEEK[]`` (fetching never marks anything) -> :meth:`Intake.ingest_batch` commits the
whole batch (one transaction, a savepoint per message) -> the batch's messages are moved to the
processed folder (one MOVE, or COPY + ``\\Deleted`` + UID EXPUNGE when the server lacks MOVE)
or flagged ``\\Seen``, and its quarantined ones to the quarantine folder -> the cursor
(UIDVALIDITY, last UID) is saved. A crash anywhere in between leaves the message where
the next poll finds it again, and deduplication turns the second sighting into "duplicate".
Quarantined mail is moved to the quarantine folder, never deleted.

TLS: ``ssl`` is implicit TLS, ``starttls`` upgrades the plain connection and fails with an
error when the server does not offer STARTTLS (it never falls back to plain text), ``none`` is
for loopback tests.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError
from sqlalchemy.orm import Session

from daemon.app import App
from daemon.config import ImapConfig, Secret
from daemon.errors import LoginRefused, MailboxRefused, MailboxUnavailable, TransientError
from daemon.intake.parsing import WORTH_A_WORKER, ParseAhead, Pending
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import MailboxCursor
from daemon.outcomes import IntakeResult, PollReport

log = logging.getLogger("ticketd.imap")

PARSE_AHEAD = 2  # batches fetched and parsing while one is written (small batches only)
BATCH_BYTES = 20 * 1024 * 1024  # fetch at most this much mail per round trip (one big mail
                                # still comes alone)


@dataclass(frozen=True)
class MailboxSpec:
    """One IMAP folder to poll, with what to do with processed mail."""

    host: str
    port: int
    security: str
    username: str
    password: Secret
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    after_processing: str = "move"
    batch_size: int = 50
    timeout: int = 60
    name: str = ""
    team: str | None = None       # default team for tickets opened from this mailbox
    address: str | None = None    # the support address this mailbox receives
    ca_file: str = ""             # a private CA to trust besides the system's

    @property
    def key(self) -> str:
        """The cursor's name: which account and folder this is."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"

    @property
    def label(self) -> str:
        return self.name or self.key

    @classmethod
    def from_config(cls, cfg: ImapConfig) -> MailboxSpec:
        return cls(cfg.host, cfg.port, cfg.security, cfg.username, cfg.password, cfg.folder,
                   cfg.processed_folder, cfg.quarantine_folder, cfg.after_processing,
                   cfg.batch_size, cfg.timeout, ca_file=cfg.ca_file)


def mailboxes(cfg: ImapConfig) -> list[MailboxSpec]:
    """Every configured mailbox: ``[imap]`` itself when it has a host, then each
    ``[[imap.mailboxes]]`` entry with its empty keys inherited from ``[imap]``."""
    specs = [MailboxSpec.from_config(cfg)] if cfg.host else []
    for index, box in enumerate(cfg.mailboxes):
        secret = cfg.mailbox_password(index)
        specs.append(MailboxSpec(
            host=box.host or cfg.host, port=box.port or cfg.port,
            security=box.security or cfg.security, username=box.username or cfg.username,
            password=secret, folder=box.folder or cfg.folder,
            processed_folder=box.processed_folder or cfg.processed_folder,
            quarantine_folder=box.quarantine_folder or cfg.quarantine_folder,
            after_processing=box.after_processing or cfg.after_processing,
            batch_size=cfg.batch_size, timeout=cfg.timeout, name=box.name,
            team=box.team or None, address=box.address or None, ca_file=cfg.ca_file))
    return specs


def connect(spec: MailboxSpec, ssl_context: ssl.SSLContext | None = None) -> IMAPClient:
    """A logged-in client; errors become MailboxUnavailable (retry), LoginRefused (wrong
    credentials: a configuration error) or MailboxRefused."""
    where = f"imap {spec.host}:{spec.port}"
    context = ssl_context or ssl.create_default_context(cafile=spec.ca_file or None)
    try:
        client = IMAPClient(spec.host, port=spec.port, ssl=spec.security == "ssl",
                            ssl_context=context if spec.security == "ssl" else None,
                            timeout=spec.timeout)
    except ssl.SSLCertVerificationError as exc:
        raise MailboxRefused(f"{where}: server certificate not trusted ({exc.verify_message}); "
                             "set [imap] ca_file for a private CA") from exc
    except (OSError, IMAPClientError) as exc:
        raise MailboxUnavailable(f"{where}: cannot connect: {exc}") from exc
    _untraced(client)
    try:
        if spec.security == "starttls":
            try:
                client.starttls(context)
            except CapabilityError:
                raise MailboxRefused(
                    f"{where}: server does not offer STARTTLS; refusing to log in in plain text"
                ) from None
        client.login(spec.username, spec.password.reveal())
    except LoginError as exc:
        quiet_logout(client)
        section = f"[{spec.password.section}]"
        raise LoginRefused(f"{where}: login refused for {spec.username}: {exc}; check "
                           f"{section} username and password_env/password_file") from exc
    except ssl.SSLCertVerificationError as exc:
        quiet_logout(client)
        raise MailboxRefused(f"{where}: server certificate not trusted ({exc.verify_message}); "
                             "set [imap] ca_file for a private CA") from exc
    except (OSError, IMAPClientError) as exc:
        quiet_logout(client)
        raise MailboxUnavailable(f"{where}: {exc}") from exc
    except BaseException:
        quiet_logout(client)
        raise
    return client


PROTOCOL_LOG = "imapclient.imaplib"


def _untraced(client: IMAPClient) -> None:
    """No protocol trace unless its logger shows it.

    imapclient sets imaplib's debug level to 5 so that imaplib's trace reaches the
    ``imapclient.imaplib`` logger; at that level imaplib formats the repr of every response,
    whole message bodies included, before the logger drops it. Measured on a backlog of
    1,000 mails (68 MB): 0.85 of the 1.4 s of CPU a fetch costs. With ``--debug`` (the logger
    on) the trace is kept."""
    if not logging.getLogger(PROTOCOL_LOG).isEnabledFor(logging.DEBUG):
        client._imap.debug = 0


def quiet_logout(client: IMAPClient) -> None:
    """Log out, or just close the socket when the connection is already gone."""
    try:
        client.logout()
    except Exception:  # the connection is already gone; nothing to clean up
        try:
            client.shutdown()
        except Exception:
            log.debug("socket already closed")


@contextmanager
def session_for(spec: MailboxSpec) -> Iterator[IMAPClient]:
    client = connect(spec)
    try:
        yield client
    finally:
        quiet_logout(client)


def _cursor(session: Session, key: str) -> MailboxCursor:
    cursor = session.get(MailboxCursor, key)
    if cursor is None:
        cursor = MailboxCursor(mailbox=key, uidvalidity=None, last_uid=0)
        session.add(cursor)
    return cursor


def _ensure_folder(client: IMAPClient, folder: str, known: set[str] | None = None) -> None:
    """Create ``folder`` unless it exists; ``known`` remembers folders seen in this poll."""
    if known is not None and folder in known:
        return
    if not client.folder_exists(folder):
        client.create_folder(folder)
    if known is not None:
        known.add(folder)


def _move(client: IMAPClient, uids: list[int], folder: str,
          known: set[str] | None = None) -> None:
    if not uids:
        return
    _ensure_folder(client, folder, known)
    if client.has_capability("MOVE"):
        client.move(uids, folder)
        return
    client.copy(uids, folder)
    client.add_flags(uids, [b"\\Deleted"])
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    # Without UIDPLUS a plain EXPUNGE would also remove mail someone else marked \Deleted:
    # ours stays marked (and is skipped by the next search) until the server expunges it.


def _settle(client: IMAPClient, spec: MailboxSpec, settled: list[tuple[int, IntakeResult]],
            known: set[str] | None = None) -> None:
    """After the commit: put the batch's messages where they belong, one command per folder.
    Nothing is deleted without a copy."""
    quarantined = [uid for uid, r in settled if r.action == "quarantined"]
    done = [uid for uid, r in settled if r.action != "quarantined"]
    _move(client, quarantined, spec.quarantine_folder, known)
    if spec.after_processing == "move":
        _move(client, done, spec.processed_folder, known)
    elif done:
        client.add_flags(done, [b"\\Seen"])


def _pending_uids(client: IMAPClient, spec: MailboxSpec, last_uid: int) -> list[int]:
    if spec.after_processing == "move":
        # Everything still in the folder is unprocessed by definition, including mail whose
        # move failed after its commit (deduplication recognises those).
        uids = client.search(["NOT", "DELETED"])
    else:
        uids = [u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid]
    return sorted(int(u) for u in uids)


def poll_once(app: App, intake: Intake, spec: MailboxSpec,
              client: IMAPClient | None = None,
              stop: Callable[[], bool] | None = None) -> PollReport:
    """Poll one folder until it is empty; ``stop()`` returning True ends after a batch."""
    report = PollReport(spec.key)
    owns = client is None
    client = client or connect(spec)
    try:
        _poll(app, intake, spec, client, report, stop)
    except (OSError, IMAPClientError) as exc:
        if isinstance(exc, IMAPClientError) and "does not exist" in str(exc).lower():
            raise MailboxRefused(f"imap {spec.key}: {exc}") from exc
        raise MailboxUnavailable(f"imap {spec.key}: {exc}") from exc
    finally:
        if owns:
            quiet_logout(client)
    return report


def _batches(client: IMAPClient, uids: list[int],
             spec: MailboxSpec) -> list[tuple[list[int], int]]:
    """UIDs in groups of at most ``batch_size`` messages and about BATCH_BYTES bytes, so a run
    of large attachments never sits in memory at once; each with its size in bytes."""
    sizes: dict[int, int] = {}
    for start in range(0, len(uids), 500):
        chunk = uids[start:start + 500]
        for uid, data in client.fetch(chunk, ["RFC822.SIZE"]).items():
            sizes[int(uid)] = int(data.get(b"RFC822.SIZE", 0))
    batches: list[tuple[list[int], int]] = []
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if batch and (len(batch) >= spec.batch_size or total + size > BATCH_BYTES):
            batches.append((batch, total))
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        batches.append((batch, total))
    return batches


def _poll(app: App, intake: Intake, spec: MailboxSpec, client: IMAPClient,
          report: PollReport, stop: Callable[[], bool] | None) -> None:
    db = app.ready_db()
    selected = client.select_folder(spec.folder)
    uidvalidity = int(selected[b"UIDVALIDITY"])
    with db.transaction() as session:
        cursor = _cursor(session, spec.key)
        if cursor.uidvalidity is not None and cursor.uidvalidity != uidvalidity:
            log.warning("%s: UIDVALIDITY changed from %s to %s: rescanning the folder "
                        "(deduplication keeps mail already seen from counting twice)",
                        spec.key, cursor.uidvalidity, uidvalidity)
            cursor.last_uid = 0
            report.uidvalidity_reset = True
        cursor.uidvalidity = uidvalidity
        cursor.last_poll_at = app.clock.now()
        last_uid = cursor.last_uid
    uids = _pending_uids(client, spec, last_uid)
    known: set[str] = set()
    # A backlog: a worker process parses (and draws the pure conclusions of) the next batch
    # while this one is written. (Fetching on a thread of its own as well was measured and
    # dropped: no faster on two cores, and 35-60 MiB more at peak with big attachments.)
    backlog = len(uids) >= WORTH_A_WORKER
    if backlog:
        log.info("%s: a backlog of %d message(s): parsing in a worker process", spec.key,
                 len(uids))
    with ParseAhead(intake.preparing(), 1 if backlog else 0) as ahead:
        plan = _batches(client, uids, spec)

        def fetch(index: int) -> tuple[list[int], Pending] | None:
            fetched = _fetched(client, plan[index][0], spec, uidvalidity)
            # A batch of big attachments is parsed here: handing it to the worker would copy
            # it twice more (pickled, then through the pipe) at the moment this process holds
            # the most, and its parse is mostly streaming the attachments out anyway.
            return None if fetched is None else (
                fetched[0], ahead.submit(fetched[1], here=not small(index)))

        def small(index: int) -> bool:
            return plan[index][1] <= BATCH_BYTES // 2

        # The next batches (up to PARSE_AHEAD) are fetched and handed to the worker before
        # this one is written, so they are parsed meanwhile and a batch that takes long to
        # parse does not stop the writing; unless one of them has big attachments: a batch
        # of those is never in memory beside another.
        coming: dict[int, tuple[list[int], Pending] | None] = {}
        for index in range(len(plan)):
            if index not in coming:
                coming[index] = fetch(index)
            later = index + 1
            while later < min(len(plan), index + 1 + PARSE_AHEAD) and small(index) \
                    and small(later):
                if later not in coming:
                    coming[later] = fetch(later)
                later += 1
            current = coming.pop(index)
            if current is not None and not _ingest(app, intake, spec, client, report, known,
                                                   *current, stop):
                return


def _fetched(client: IMAPClient, batch: list[int], spec: MailboxSpec,
             uidvalidity: int) -> tuple[list[int], list[RawMail]] | None:
    """A batch's UIDs and raw messages (mail expunged meanwhile by others left out; None
    when that is all of it)."""
    fetched = client.fetch(batch, ["BODY.PEEK[]"])
    taken: list[int] = []
    raws: list[RawMail] = []
    for uid in batch:
        data = fetched.pop(uid, {}).get(b"BODY[]")
        if data is None:  # expunged by someone else meanwhile
            continue
        taken.append(uid)
        raws.append(RawMail(bytes(data),
                            f"imap:{spec.key};uidvalidity={uidvalidity};uid={uid}"))
    del fetched
    return (taken, raws) if raws else None


def _ingest(app: App, intake: Intake, spec: MailboxSpec, client: IMAPClient,
            report: PollReport, known: set[str], taken: list[int], parsing: Pending,
            stop: Callable[[], bool] | None) -> bool:
    """Commit one batch, then move it and save the cursor; False when told to stop."""
    try:
        results = intake.ingest_batch(parsing.raws, parsing.result())
    except TransientError:
        log.error("%s uids %s-%s: database unavailable; left in the folder", spec.key,
                  taken[0], taken[-1])
        raise
    _settle(client, spec, list(zip(taken, results, strict=True)), known)
    report.results.extend(results)
    with app.db.transaction() as session:
        cursor = _cursor(session, spec.key)
        cursor.last_uid = max(cursor.last_uid, taken[-1])
    return stop is None or not stop()
