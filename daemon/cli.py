"""The `ticketd` command line: the only module that prints.

Every command is a function ``(app, args) -> exit status``. Errors derived from
:class:`~daemon.errors.TicketdError` become one line on stderr and exit 2 (usage, config) or 1
(runtime); any other exception also becomes one line, with the traceback only under --debug.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon import __version__
from daemon import config as configmod
from daemon.app import App
from daemon.clock import format_time, iso_time
from daemon.errors import ConfigError, TicketdError, UsageError
from daemon.memory import release_big_buffers

if TYPE_CHECKING:
    from daemon.replies.composers import Composer

log = logging.getLogger("ticketd")

Command = Callable[[App, argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors take the same one-line path."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")


def _emit_json(data: Any, zone: tzinfo = UTC) -> None:
    """JSON on stdout; times as ISO 8601 in ``zone`` (the ``[support] timezone``)."""

    def plain(value: Any) -> Any:
        return iso_time(value, zone) if isinstance(value, datetime) else str(value)

    print(json.dumps(data, ensure_ascii=False, indent=2, default=plain))


def _when(value: datetime | str | None, zone: tzinfo) -> str:
    """A time (or its ISO text) as every human-facing line shows one: clock.format_time."""
    if value is None:
        return "-"
    return format_time(datetime.fromisoformat(value) if isinstance(value, str) else value, zone)


# ---------------------------------------------------------------- config / db


def cmd_config_check(app: App, args: argparse.Namespace) -> int:
    # Loading already validated the file; read the secrets too, by the rule `run` uses.
    configmod.check_secrets(app.config)
    print("ok")
    return 0


def cmd_db_upgrade(app: App, args: argparse.Namespace) -> int:
    from daemon import db as dbmod

    before = dbmod.current_revision(app.db)
    app.ready_db()
    after = dbmod.current_revision(app.db)
    if before == after:
        print(f"database is up to date (revision {after})")
    else:
        print(f"database upgraded from {before or 'empty'} to {after}")
    return 0


# ---------------------------------------------------------------- tickets


def cmd_tickets_list(app: App, args: argparse.Namespace) -> int:
    from daemon import tickets

    if args.status and args.status not in tickets.STATUSES:
        raise UsageError(f"--status: expected one of {', '.join(tickets.STATUSES)}, "
                         f"got {args.status!r}")
    if args.priority and args.priority.upper() not in tickets.PRIORITIES:
        raise UsageError(f"--priority: expected one of {', '.join(tickets.PRIORITIES)}, "
                         f"got {args.priority!r}")
    zone = app.config.support.zone
    now = app.clock.now()
    with app.ready_db().transaction() as session:
        rows = [tickets.to_dict(t, full=False, zone=zone, now=now,
                                category_en=app.reader.label_en(t.category))
                for t in tickets.listing(session, args.status, team=args.team,
                                         handler=args.handler, priority=args.priority)]
    if args.json:
        _emit_json(rows)
        return 0
    if not rows:
        print("no tickets")
        return 0
    print(f"{'NUMBER':<17} {'STATUS':<11} PRI {'CREATED':<25}  {'TEAM':<8} "
          f"{'HANDLER':<24} {'ASSIGN BY':<26}  SUBJECT")
    for row in rows:
        created = _when(row["created_at"], zone)
        deadline = _when(row["deadlines"]["assign_by"], zone)
        if row["deadlines"]["breached"]:
            deadline += "!"
        print(f"{row['number']:<17} {row['status']:<11} {row['priority']}  {created}  "
              f"{row['team'] or '-':<8} {row['handler'] or '-':<24} {deadline:<26}  "
              f"{row['subject']}")
    return 0


def cmd_tickets_show(app: App, args: argparse.Namespace) -> int:
    from daemon import tickets
    from daemon.classify import field_lines

    zone = app.config.support.zone
    with app.ready_db().transaction() as session:
        ticket = tickets.get(session, args.number)
        data = tickets.to_dict(ticket, zone=zone, now=app.clock.now(),
                               category_en=app.reader.label_en(ticket.category))
    if args.json:
        _emit_json(data)
        return 0
    print(f"{data['number']}  [{data['status']}] {data['priority']}  {data['subject']}")
    req = data["requester"]
    print(f"requester: {req['name']} <{req['email']}>" if req["name"] else
          f"requester: {req['email']}")
    print(f"category: {data['category'] or '-'}   team: {data['team'] or '-'}   "
          f"handler: {data['handler'] or '-'}")
    if data["co_handlers"]:
        print("co-handlers: " + ", ".join(data["co_handlers"]))
    dl = data["deadlines"]
    print(f"assign by: {_when(dl['assign_by'], zone)}"
          + ("   BREACHED" if dl["breached"] else "")
          + (f"   assigned at: {_when(dl['assigned_at'], zone)}" if dl["assigned_at"] else ""))
    if data["linked_ticket"]:
        print(f"linked to: {data['linked_ticket']}")
    if data["resolution"]:
        print(f"resolution: {data['resolution']}")
    if data["rating"] is not None:
        print(f"rating: {data['rating']}/5")
    if data["cc"]:
        print("cc: " + ", ".join(data["cc"]))
    for line in field_lines(data["fields"], app.config.support.locale):
        print(line)
    for msg in data["messages"]:
        arrow = "<-" if msg["direction"] == "in" else "->"
        print(f"\n{arrow} {_when(msg['date'], zone)}  {msg['kind']}  from {msg['from']['email']}")
        print(f"   {msg['subject']}")
        for line in (msg["body_text"] or "").strip().splitlines():
            print(f"   | {line}")
        if msg["quoted_text"]:
            print(f"   ({len(msg['quoted_text'].splitlines())} quoted lines folded)")
        for att in msg["attachments"]:
            note = f"  SKIPPED: {att['skipped']}" if att["skipped"] else ""
            print(f"   + {att['filename']} ({att['content_type']}, {att['size']} bytes){note}")
    print("\nevents:")
    for ev in data["events"]:
        print(f"  {_when(ev['at'], zone)}  {ev['actor']}  {ev['action']}  {ev['detail']}")
    return 0


# ---------------------------------------------------------------- the process (operators)


def _desk(app: App, args: argparse.Namespace, steps: list[tuple[str, str]]) -> int:
    from daemon import desk

    done = desk.run(app, args.number, steps, actor=args.as_)
    _flush_outbox(app)
    if args.json:
        _emit_json({"ticket": done.ticket, "mails": done.mails})
        return 0
    t = done.ticket
    print(f"{t['number']}  [{t['status']}] {t['priority']}  team {t['team'] or '-'}  "
          f"handler {t['handler'] or '-'}")
    for mail in done.mails:
        print(f"  mail: {mail}")
    return 0


def cmd_tickets_assign(app: App, args: argparse.Namespace) -> int:
    steps = [("assign", " ".join([args.handler, *(args.cc or [])]))]
    return _desk(app, args, steps)


def cmd_tickets_set(app: App, args: argparse.Namespace) -> int:
    steps = [(name, value) for name, value in (("team", args.team), ("type", args.category),
                                               ("priority", args.priority)) if value]
    if not steps:
        raise UsageError("tickets set: give --priority, --category or --team")
    return _desk(app, args, steps)


def cmd_tickets_note(app: App, args: argparse.Namespace) -> int:
    return _desk(app, args, [("internal", args.text)])


def cmd_tickets_resolve(app: App, args: argparse.Namespace) -> int:
    return _desk(app, args, [("resolve", args.text)])


def cmd_tickets_close(app: App, args: argparse.Namespace) -> int:
    return _desk(app, args, [("close", "")])


def cmd_tickets_reopen(app: App, args: argparse.Namespace) -> int:
    return _desk(app, args, [("reopen", args.reason or "")])


def cmd_sweep(app: App, args: argparse.Namespace) -> int:
    from daemon import jobs

    report = jobs.sweep(app)
    _flush_outbox(app)
    if args.json:
        _emit_json({job.name: {"tickets": list(job.tickets), "error": job.error}
                    for job in report.jobs})
        return 1 if report.failed else 0
    for job in report.jobs:
        numbers = job.tickets
        line = f"{job.name}: {len(numbers)}" + (f" ({', '.join(numbers)})" if numbers else "")
        print(line + (f"  ERROR: {job.error}" if job.error else ""))
    return 1 if report.failed else 0


# ---------------------------------------------------------------- intake


def _intake(app: App, mailbox: str | None = None, team: str | None = None) -> Any:
    from daemon.intake.pipeline import Intake

    return Intake(app, notifier=_notifier(app), origin_mailbox=mailbox, default_team=team)


def _notifier(app: App) -> Any:
    from daemon.replies.notify import Notify

    return Notify(app)


def _flush_outbox(app: App, composer: Composer | None = None) -> None:
    from daemon.replies.outbox import flush

    report = flush(app, composer=composer)
    if report.attempted:
        print(f"outbox: {report.sent} sent, {report.retrying} to retry, {report.failed} failed",
              file=sys.stderr)
    if report.held:  # why is the outbox's one log line
        print(f"outbox: {report.held} held", file=sys.stderr)


SKIPPED_NAMED = 20  # files of a folder named one by one as skipped; the rest are counted


def _chunks(raws: Iterable[Any], count: int = 50, size: int = 20 * 1024 * 1024
            ) -> Iterator[list[Any]]:
    """Messages in batches of at most ``count`` and about ``size`` bytes (one transaction
    each, as IMAP batches are)."""
    batch: list[Any] = []
    total = 0
    for raw in raws:
        if batch and (len(batch) >= count or total + len(raw.data) > size):
            yield batch
            batch, total = [], 0
        batch.append(raw)
        total += len(raw.data)
    if batch:
        yield batch


def cmd_ingest(app: App, args: argparse.Namespace) -> int:
    from daemon.intake import sources

    intake = _intake(app)
    total = sources.count(args.paths) if sys.stderr.isatty() else None
    bar = None
    if total is not None and total > 1:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="msg", file=sys.stderr, dynamic_ncols=True)
    failures = 0
    counts: dict[str, int] = {}
    skipped: list[Path] = []

    def skip(path: Path, why: str) -> None:
        skipped.append(path)
        if len(skipped) <= SKIPPED_NAMED:
            print(f"- skipped {path}: {why}", file=sys.stderr, flush=True)

    for batch in _chunks(sources.read(args.paths, skip)):
        try:
            outcomes: list[tuple[str, str]] = []
            for result in intake.ingest_batch(batch):
                line = json.dumps(result.as_dict(), ensure_ascii=False) if args.json else \
                    result.line()
                outcomes.append((line, result.action))
        except TicketdError as exc:  # database down: none of this batch was handled
            failures += len(batch)
            outcomes = [(f"- failed {exc} ({raw.origin})", "failed") for raw in batch]
        for line, action in outcomes:
            counts[action] = counts.get(action, 0) + 1
            if bar is not None:
                bar.write(line)
                bar.update(1)
            else:
                print(line, flush=True)
    if bar is not None:
        bar.close()
    if len(skipped) > SKIPPED_NAMED:
        print(f"- skipped {len(skipped) - SKIPPED_NAMED} more files that are not mail files",
              file=sys.stderr)
    if not args.json and sum(counts.values()) > 1:
        summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
        print(f"{sum(counts.values())} messages: {summary}", file=sys.stderr)
    _flush_outbox(app)
    return 1 if failures else 0


def cmd_poll(app: App, args: argparse.Namespace) -> int:
    from daemon.intake import imap
    from daemon.replies import outbox

    if not args.once:
        raise UsageError("poll: continuous polling is `ticketd run`; use `ticketd poll --once`")
    specs = imap.mailboxes(app.config.imap)
    if not specs:
        raise ConfigError(f"{app.config.path or 'config'}: [imap] host: expected an IMAP server "
                          "to poll, got none")
    failed = 0
    # The mails intake queues are written by a worker process between batches, so the
    # other core composes while this one ingests; the final flush then mostly sends.
    prewriter = outbox.Prewriter(app)

    def after_batch() -> bool:  # poll_once's between-batches hook; never stops the poll
        prewriter.after_batch()
        return False

    try:
        for spec in specs:
            try:
                report = imap.poll_once(app, _intake(app, spec.label, spec.team), spec,
                                        stop=after_batch)
            except TicketdError as exc:
                if isinstance(exc, ConfigError):
                    raise
                print(f"ticketd: {exc}", file=sys.stderr)
                failed += 1
                continue
            for result in report.results:
                print(json.dumps(result.as_dict(), ensure_ascii=False) if args.json
                      else result.line())
            if not args.json:
                print(f"{spec.label}: {len(report.results)} messages", file=sys.stderr)
        _flush_outbox(app, prewriter.composer)
    finally:
        prewriter.close()
    return 1 if failed else 0


def cmd_quarantine_list(app: App, args: argparse.Namespace) -> int:
    from daemon.intake import quarantine

    zone = app.config.support.zone
    rows = quarantine.entries(app, include_released=args.all)
    if args.json:
        _emit_json([row.__dict__ for row in rows], zone)
        return 0
    if not rows:
        print("quarantine is empty")
    for row in rows:
        state = f" released {_when(row.released_at, zone)}" if row.released_at else ""
        print(f"{row.id:>5}  {_when(row.at, zone)}  {row.message_id or '-'}  {row.reason}"
              f"  [{row.origin}]{state}")
    return 0


def cmd_quarantine_show(app: App, args: argparse.Namespace) -> int:
    from daemon.intake import quarantine

    sys.stdout.buffer.write(quarantine.raw_of(app, args.id))
    return 0


def cmd_quarantine_release(app: App, args: argparse.Namespace) -> int:
    from daemon.intake import quarantine

    result = quarantine.release(app, args.id, _intake(app))
    print(result.line())
    _flush_outbox(app)
    return 0 if result.action != "quarantined" else 1


# ---------------------------------------------------------------- outgoing mail


def cmd_outbox_list(app: App, args: argparse.Namespace) -> int:
    from daemon.replies import outbox

    statuses = outbox.STATUSES if args.all else ("queued", "sending", "failed")
    zone = app.config.support.zone
    rows = outbox.entries(app, statuses)
    if args.json:
        _emit_json([row.__dict__ for row in rows], zone)
        return 0
    if not rows:
        print("outbox is empty" if not args.all else "no mail")
    for row in rows:
        state = row.status
        if row.status == "queued" and row.attempts:
            state = f"retrying (attempt {row.attempts + 1} at {_when(row.next_attempt_at, zone)})"
        elif row.status == "sent" and row.sent_at:
            state = f"sent {_when(row.sent_at, zone)}"
        error = f"  last error: {row.last_error}" if row.last_error else ""
        print(f"{row.id:>5}  {_when(row.created_at, zone)}  {row.kind:<11} {row.number or '-':<18} "
              f"{', '.join(row.recipients):<30} {state}{error}")
    return 0


def cmd_outbox_flush(app: App, args: argparse.Namespace) -> int:
    from daemon.replies import outbox

    report = outbox.flush(app, force=True)
    print(f"{report.sent} sent, {report.retrying} to retry, {report.failed} failed"
          + (f", {report.held} held" if report.held else ""))
    if report.problem is not None:
        # The outbox logged the one line naming the server and what to fix; 2 when it is
        # the configuration (a refused login), 1 when the server is down.
        return report.problem.exit_code
    return 0 if not report.retrying else 1


def cmd_outbox_resend(app: App, args: argparse.Namespace) -> int:
    from daemon.replies import resend

    target = args.target.strip()
    if target.isdigit():
        if args.kind:
            raise UsageError(f"outbox resend: {target} is an outbox id, which takes no kind; "
                             "for a ticket give its number (TS...) and a kind")
        result = resend.requeue(app, int(target))
    elif not args.kind:
        raise UsageError(f"outbox resend: expected a kind after the ticket number {target}, "
                         f"e.g. `ticketd outbox resend {target} acceptance`")
    else:
        result = resend.resend(app, target, args.kind)
    print(json.dumps(result.as_dict(), ensure_ascii=False) if args.json else result.line())
    return 1 if result.action == "failed" else 0


def cmd_templates_check(app: App, args: argparse.Namespace) -> int:
    from daemon.replies import templates

    problems = templates.store(app).check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in the mail templates", file=sys.stderr)
        return 2
    roots = ", ".join(str(r) for r in templates.store(app).roots())
    print(f"ok ({roots})")
    return 0


def cmd_templates_preview(app: App, args: argparse.Namespace) -> int:
    from daemon.replies import kinds, preview
    from daemon.replies.compose import to_bytes

    if args.kind not in kinds.KINDS:
        raise UsageError(f"templates preview: unknown kind {args.kind!r}; expected one of "
                         + ", ".join(sorted(kinds.KINDS)))
    built = preview.build(app, args.kind, args.locale, args.ticket)
    if args.raw:
        sys.stdout.write(to_bytes(built.message).decode("ascii", "replace").replace("\r\n", "\n"))
    else:
        sys.stdout.write(preview.render(built, app.config.support.zone))
    return 0


# ---------------------------------------------------------------- explain, daemon, status


def cmd_inspect(app: App, args: argparse.Namespace) -> int:
    from daemon import explain

    if args.path == "-":
        raw, origin = sys.stdin.buffer.read(), "stdin"
    else:
        path = Path(args.path)
        if not path.is_file():
            raise UsageError(f"{args.path}: no such file")
        raw, origin = path.read_bytes(), str(path)
    result = explain.explain(app, raw, origin=origin)
    if args.json:
        _emit_json(result.as_dict())
    else:
        print(explain.render(result))
    # Every verdict, "quarantined" included, is a successful explanation: exit 0. Exit 1 only
    # when ticketd itself fails (an exception), 2 on a usage or configuration error.
    return 0


def cmd_run(app: App, args: argparse.Namespace) -> int:
    from daemon import service

    return service.run(app)


def cmd_lmtp(app: App, args: argparse.Namespace) -> int:
    from daemon import service

    return service.run_lmtp(app)


def cmd_status(app: App, args: argparse.Namespace) -> int:
    from daemon import status

    data = status.collect(app)
    if args.json:
        _emit_json(data)
    else:
        print(status.render(data))
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ticketd", description="Email-driven support-ticket intake daemon.")
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="config file (default: $TICKETD_CONFIG, then ./config.toml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--version", action="version", version=f"ticketd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def group(name: str, help_text: str) -> Any:
        p = sub.add_parser(name, help=help_text)
        return p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser)

    cfg = group("config", "check the configuration")
    cfg.add_parser("check", help="validate the config file").set_defaults(func=cmd_config_check)

    dbp = group("db", "database schema")
    dbp.add_parser("upgrade", help="create or migrate the database").set_defaults(
        func=cmd_db_upgrade)

    tk = group("tickets", "list and show tickets")
    p = tk.add_parser("list", help="list tickets")
    p.add_argument("--status", help="only tickets with this status")
    p.add_argument("--team", help="only tickets of this team")
    p.add_argument("--handler", metavar="ADDR", help="only tickets of this main handler")
    p.add_argument("--priority", help="only tickets of this priority (P0..P3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_list)
    p = tk.add_parser("show", help="show one ticket with its messages and events")
    p.add_argument("number")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_show)

    def acting(p: Any) -> Any:
        p.add_argument("number", metavar="NUMBER")
        p.add_argument("--as", dest="as_", metavar="ADDR",
                       help="the acting handler (default: the support address)")
        p.add_argument("--json", action="store_true")
        return p

    p = acting(tk.add_parser("assign", help="make HANDLER the main handler"))
    p.add_argument("handler", metavar="HANDLER")
    p.add_argument("--cc", action="append", metavar="ADDR", help="add a co-handler (repeat)")
    p.set_defaults(func=cmd_tickets_assign)
    p = acting(tk.add_parser("set", help="change priority, category or team"))
    p.add_argument("--priority", help="P0..P3 (the assignment deadline is recomputed)")
    p.add_argument("--category", help="problem type (name or English label)")
    p.add_argument("--team", help="team name")
    p.set_defaults(func=cmd_tickets_set)
    p = acting(tk.add_parser("note", help="add an internal note to the process log"))
    p.add_argument("text", metavar="TEXT")
    p.set_defaults(func=cmd_tickets_note)
    p = acting(tk.add_parser("resolve", help="resolve; TEXT goes to the requester"))
    p.add_argument("text", metavar="TEXT")
    p.set_defaults(func=cmd_tickets_resolve)
    p = acting(tk.add_parser("close", help="close the ticket"))
    p.set_defaults(func=cmd_tickets_close)
    p = acting(tk.add_parser("reopen", help="reopen a resolved or closed ticket"))
    p.add_argument("--reason", help="why (goes to the handler)")
    p.set_defaults(func=cmd_tickets_reopen)
    p = sub.add_parser("sweep", help="run the periodic jobs once (SLA breaches, need_info "
                                     "reminders, auto-close)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("ingest", help="ingest .eml files, mbox files, Maildirs or stdin (-)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("poll", help="poll the configured IMAP mailbox")
    p.add_argument("--once", action="store_true", help="poll once and exit")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.set_defaults(func=cmd_poll)

    p = sub.add_parser("inspect", help="explain how ticketd reads a message; changes nothing; "
                                       "exit 0 for any verdict (quarantine too), 1 only when "
                                       "ticketd fails")
    p.add_argument("path", metavar="PATH", help="a raw message file, or - for stdin")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    sub.add_parser("run", help="run the daemon: poll (with IDLE), send, sweep").set_defaults(
        func=cmd_run)
    sub.add_parser("lmtp", help="serve LMTP ([lmtp] host/port or socket) for the site's MTA, "
                   "with the sender and the sweep; no IMAP").set_defaults(func=cmd_lmtp)
    p = sub.add_parser("status", help="polls, queues, tickets and SLA at a glance")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    op = group("outbox", "outgoing mail queue")
    p = op.add_parser("list", help="queued, retrying and failed mail")
    p.add_argument("--all", action="store_true", help="include sent mail")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_outbox_list)
    op.add_parser("flush", help="send queued mail now").set_defaults(func=cmd_outbox_flush)
    p = op.add_parser("resend", help="queue outbox mail ID again, or write the KIND mail of "
                                     "ticket NUMBER again and queue it")
    p.add_argument("target", metavar="ID|NUMBER", help="an outbox id, or a ticket number")
    p.add_argument("kind", nargs="?", metavar="KIND", help="with a ticket number: the mail kind")
    p.add_argument("--json", action="store_true", help="the result as a JSON object")
    p.set_defaults(func=cmd_outbox_resend)

    tp = group("templates", "mail templates")
    tp.add_parser("check", help="check every template; exit 2 on any problem").set_defaults(
        func=cmd_templates_check)
    p = tp.add_parser("preview", help="show the mail a kind would produce; nothing is sent")
    p.add_argument("kind")
    p.add_argument("--locale", help="zh-CN or en (default: the ticket's, else the config's)")
    p.add_argument("--ticket", metavar="NUMBER", help="fill in from this ticket")
    p.add_argument("--raw", action="store_true", help="print the MIME message as it is sent")
    p.set_defaults(func=cmd_templates_preview)

    qp = group("quarantine", "mail that could not be processed")
    p = qp.add_parser("list", help="list quarantined mail")
    p.add_argument("--all", action="store_true", help="include released entries")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quarantine_list)
    p = qp.add_parser("show", help="print the raw bytes of one entry")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_quarantine_show)
    p = qp.add_parser("release", help="run one entry through intake again")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_quarantine_release)

    return parser


def _setup_logging(debug: bool, cfg: configmod.Config | None, *, quiet: bool) -> None:
    from daemon.logs import setup

    setup(debug=debug, cfg=cfg, quiet=quiet)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    release_big_buffers()  # a backlog's big mails must not stay part of the process
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        cfg = configmod.load(args.config)
        # Only the daemon logs every event; one-shot commands print their own results.
        _setup_logging(args.debug, cfg, quiet=args.command not in ("run", "lmtp"))
        app = App(cfg)
        try:
            return int(args.func(app, args))
        finally:
            app.close()
    except TicketdError as exc:
        if debug:
            raise
        print(f"ticketd: {exc}" if not isinstance(exc, ConfigError) else str(exc),
              file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if debug:
            raise
        print(f"ticketd: unexpected error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1
