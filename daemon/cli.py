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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon import config as configmod
from daemon.app import App
from daemon.errors import ConfigError, TicketdError, UsageError

log = logging.getLogger("ticketd")

Command = Callable[[App, argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors take the same one-line path."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")


def _emit_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


# ---------------------------------------------------------------- config / db


def cmd_config_check(app: App, args: argparse.Namespace) -> int:
    # Loading already validated the file; also resolve secrets so a missing one shows now.
    cfg = app.config
    for name, section in (("imap", cfg.imap), ("smtp", cfg.smtp)):
        secret = section.password
        if secret.configured and ((name == "smtp" and cfg.smtp.backend == "smtp") or
                                  (name == "imap" and cfg.imap.host)):
            secret.reveal()
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
    zone = app.config.support.zone
    with app.ready_db().transaction() as session:
        rows = [tickets.to_dict(t, full=False, zone=zone)
                for t in tickets.listing(session, args.status)]
    if args.json:
        _emit_json(rows)
        return 0
    if not rows:
        print("no tickets")
        return 0
    for row in rows:
        created = (row["created_at"] or "")[:16].replace("T", " ")
        who = row["requester"]["email"]
        print(f"{row['number']}  {row['status']:<9} {row['priority']}  {created}  "
              f"{who:<28} {row['subject']}")
    return 0


def cmd_tickets_show(app: App, args: argparse.Namespace) -> int:
    from daemon import tickets

    with app.ready_db().transaction() as session:
        data = tickets.to_dict(tickets.get(session, args.number), zone=app.config.support.zone)
    if args.json:
        _emit_json(data)
        return 0
    print(f"{data['number']}  [{data['status']}] {data['priority']}  {data['subject']}")
    req = data["requester"]
    print(f"requester: {req['name']} <{req['email']}>" if req["name"] else
          f"requester: {req['email']}")
    print(f"category: {data['category'] or '-'}   team: {data['team'] or '-'}   "
          f"handler: {data['handler'] or '-'}")
    if data["cc"]:
        print("cc: " + ", ".join(data["cc"]))
    for key, value in data["fields"].items():
        print(f"{key}: {value}")
    for msg in data["messages"]:
        arrow = "<-" if msg["direction"] == "in" else "->"
        print(f"\n{arrow} {msg['date'] or '?'}  {msg['kind']}  from {msg['from']['email']}")
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
        print(f"  {ev['at']}  {ev['actor']}  {ev['action']}  {ev['detail']}")
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
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_list)
    p = tk.add_parser("show", help="show one ticket with its messages and events")
    p.add_argument("number")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tickets_show)

    return parser


def _setup_logging(debug: bool, cfg: configmod.Config | None) -> None:
    from daemon.logs import setup

    setup(debug=debug, cfg=cfg)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        cfg = configmod.load(args.config)
        _setup_logging(args.debug, cfg)
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
