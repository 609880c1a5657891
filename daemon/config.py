"""config.toml -> frozen, validated config objects.

The shipped `config.toml` is the schema: every key it lists is declared here as a dataclass
field with its default, its expected shape (``spec``) and whether it is a path. Loading checks
every key of the file against these declarations, so a misspelt key, a wrong type or an
impossible value is an error that names the file, the section and key, what was expected and
what was found::

    config.toml: [imap] port: expected an integer 1-65535, got "abc"

Secrets never live in the file: a section names an environment variable (``password_env``) or
a file (``password_file``) and :meth:`Secret.reveal` reads it only when a connection is made.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon import verp
from daemon.addresses import normalize
from daemon.errors import ConfigError


@dataclass(frozen=True)
class Check:
    """A value check: ``expected`` is the phrase shown to the user when ``ok`` says no."""

    expected: str
    ok: Callable[[Any], bool]


def spec(check: Check | None = None, *, path: bool = False) -> dict[str, object]:
    """Field metadata: an extra check, and whether the value is a path relative to the file."""
    return {"check": check, "path": path}


def one_of(*choices: str) -> Check:
    return Check("one of " + ", ".join(f'"{c}"' for c in choices), lambda v: v in choices)


def int_range(low: int, high: int | None = None) -> Check:
    if high is None:
        return Check(f"an integer >= {low}", lambda v: v >= low)
    return Check(f"an integer {low}-{high}", lambda v: low <= v <= high)


def _is_zone(value: str) -> bool:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _is_address(value: str) -> bool:
    local, _, domain = value.rpartition("@")
    return bool(local) and "." in domain and " " not in value


def split_mailbox(value: str) -> tuple[str, str]:
    """``"王工 <wang@corp.example>"`` or ``"wang@corp.example"`` -> (display name, address)."""
    text = value.strip()
    if text.endswith(">") and "<" in text:
        name, _, rest = text.rpartition("<")
        return name.strip().strip('"').strip(), rest[:-1].strip().lower()
    return "", text.lower()


def _is_mailbox(value: str) -> bool:
    return _is_address(split_mailbox(value)[1])


_NAME = re.compile(r"[A-Za-z0-9_-]{1,60}")
# The teams the built-in category table routes to (daemon/classify.py), used when
# [[categories]] is not configured.
BUILTIN_TEAMS = ("ops", "dev", "admins")
_ZONE = Check('an IANA time zone name such as "Asia/Shanghai"', _is_zone)
_ADDRESS = Check("an e-mail address", _is_address)
_PREFIX = Check("1-10 ASCII letters", lambda v: v.isascii() and v.isalpha() and len(v) <= 10)
_LOCALE = one_of("zh-CN", "en")
_URL = Check(
    'a "sqlite:///path" or "postgresql+psycopg://..." URL',
    lambda v: v.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://",
                            "postgresql+psycopg2://", "postgres://")),
)


@dataclass(frozen=True)
class Secret:
    """Where a password comes from; never its value. ``repr`` shows only the source."""

    section: str
    env: str = ""
    file: Path | None = None

    def __repr__(self) -> str:
        where = f"env {self.env}" if self.env else f"file {self.file}" if self.file else "none"
        return f"Secret({where})"

    @property
    def configured(self) -> bool:
        return bool(self.env or self.file)

    def reveal(self) -> str:
        """The password, read now; a ConfigError that names the source when it is missing."""
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(
                    f"[{self.section}] password_env: environment variable {self.env} is not set"
                )
            return value
        if self.file:
            try:
                return self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"[{self.section}] password_file: cannot read {self.file}: {exc.strerror}"
                ) from None
        return ""


def required_secrets(config: Config) -> list[Secret]:
    """Every password a connection of ``ticketd run`` will ask for, each source once.

    The one rule that ``config check`` and ``run`` share: ``[imap]`` when it has a host, every
    ``[[imap.mailboxes]]`` entry (its own password or the inherited one), and ``[smtp]`` when
    the backend is ``smtp``. A section without ``password_env``/``password_file`` logs in
    without a password (or not at all) and needs none.
    """
    imap = config.imap
    wanted = [imap.password] if imap.host else []
    wanted += [imap.mailbox_password(i) for i in range(len(imap.mailboxes))]
    if config.smtp.backend == "smtp":
        wanted.append(config.smtp.password)
    return [s for s in dict.fromkeys(wanted) if s.configured]


def check_secrets(config: Config) -> None:
    """Read every required secret now: a ConfigError naming the file and key if one is missing."""
    for secret in required_secrets(config):
        try:
            secret.reveal()
        except ConfigError as exc:
            raise ConfigError(f"{config.path or 'config'}: {exc}") from None


@dataclass(frozen=True)
class SupportConfig:
    address: str = field(default="support@example.com", metadata=spec(_ADDRESS))
    name: str = "Support"
    locale: str = field(default="zh-CN", metadata=spec(_LOCALE))
    timezone: str = field(default="Asia/Shanghai", metadata=spec(_ZONE))
    # Other addresses that are ours (aliases): mail from them never opens a ticket.
    aliases: tuple[str, ...] = ()

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def own_addresses(self) -> frozenset[str]:
        return frozenset(a.lower() for a in (self.address, *self.aliases))

    @property
    def default_domain(self) -> str:
        return self.domain


@dataclass(frozen=True)
class TicketsConfig:
    prefix: str = field(default="TS", metadata=spec(_PREFIX))
    serial_width: int = field(default=6, metadata=spec(int_range(3, 12)))
    # A subject number from someone who is not a participant: "link" opens a new ticket that
    # links to the old one; "append" appends to it and flags the message as untrusted.
    stranger_number: str = field(default="link", metadata=spec(one_of("link", "append")))
    # A resolved ticket with no reply for this many days is closed (the resolution mail says so).
    auto_close_days: int = field(default=7, metadata=spec(int_range(1, 365)))
    # People the requester copied are copied on our mails to the requester.
    copy_cc: bool = True
    # A requester's short reply to a resolution containing one of these closes the ticket;
    # any other reply reopens it (empty = the built-in list of daemon/feedback.py).
    confirmations: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = field(default="sqlite:///var/tickets.db", metadata=spec(_URL))
    echo: bool = False


@dataclass(frozen=True)
class MailboxConfig:
    """One more mailbox in ``[[imap.mailboxes]]``; empty/zero values inherit from ``[imap]``."""

    name: str = ""
    address: str = field(default="", metadata=spec(Check("an e-mail address",
                                                          lambda v: not v or _is_address(v))))
    team: str = ""  # default team for tickets opened from this mailbox
    host: str = ""
    port: int = field(default=0, metadata=spec(int_range(0, 65535)))
    security: str = field(default="", metadata=spec(one_of("", "ssl", "starttls", "none")))
    username: str = ""
    password_env: str = ""
    password_file: str = field(default="", metadata=spec(path=True))
    folder: str = ""
    processed_folder: str = ""
    quarantine_folder: str = ""
    after_processing: str = field(default="", metadata=spec(one_of("", "move", "flag")))


@dataclass(frozen=True)
class ImapConfig:
    host: str = ""  # empty: no mailbox configured (ingest from files only)
    port: int = field(default=993, metadata=spec(int_range(1, 65535)))
    security: str = field(default="ssl", metadata=spec(one_of("ssl", "starttls", "none")))
    username: str = ""
    password_env: str = ""
    password_file: str = field(default="", metadata=spec(path=True))
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    after_processing: str = field(default="move", metadata=spec(one_of("move", "flag")))
    poll_interval: int = field(default=60, metadata=spec(int_range(1, 86400)))
    batch_size: int = field(default=50, metadata=spec(int_range(1, 1000)))
    idle: bool = True
    timeout: int = field(default=60, metadata=spec(int_range(1, 3600)))
    ca_file: str = field(default="", metadata=spec(path=True))  # trust this CA (PEM) too
    # Seconds a poller's lease on a mailbox lasts (several instances: one polls each mailbox).
    lease_seconds: int = field(default=120, metadata=spec(int_range(10, 86400)))
    mailboxes: tuple[MailboxConfig, ...] = ()

    @property
    def password(self) -> Secret:
        return Secret("imap", self.password_env, Path(self.password_file) if self.password_file
                      else None)

    def mailbox_password(self, index: int) -> Secret:
        """The password of ``mailboxes[index]``: its own, else the one of ``[imap]``."""
        box = self.mailboxes[index]
        if not (box.password_env or box.password_file):
            return self.password
        return Secret(f"imap.mailboxes][{index}", box.password_env,
                      Path(box.password_file) if box.password_file else None)


@dataclass(frozen=True)
class SmtpConfig:
    backend: str = field(default="file", metadata=spec(one_of("smtp", "file")))
    host: str = "localhost"
    port: int = field(default=587, metadata=spec(int_range(1, 65535)))
    security: str = field(default="starttls", metadata=spec(one_of("ssl", "starttls", "none")))
    username: str = ""
    password_env: str = ""
    password_file: str = field(default="", metadata=spec(path=True))
    file_dir: str = field(default="var/outbox", metadata=spec(path=True))
    timeout: int = field(default=30, metadata=spec(int_range(1, 3600)))
    ca_file: str = field(default="", metadata=spec(path=True))  # trust this CA (PEM) too
    max_attempts: int = field(default=8, metadata=spec(int_range(1, 100)))
    retry_base: int = field(default=60, metadata=spec(int_range(1, 86400)))
    batch_size: int = field(default=50, metadata=spec(int_range(1, 10000)))
    # A mail being sent is claimed this long; a claim left by a dead process then expires.
    claim_seconds: int = field(default=600, metadata=spec(int_range(1, 86400)))

    @property
    def password(self) -> Secret:
        return Secret("smtp", self.password_env, Path(self.password_file) if self.password_file
                      else None)


@dataclass(frozen=True)
class AttachmentsConfig:
    dir: str = field(default="var/attachments", metadata=spec(path=True))
    max_bytes: int = field(default=25 * 1024 * 1024, metadata=spec(int_range(1)))
    max_message_bytes: int = field(default=50 * 1024 * 1024, metadata=spec(int_range(1)))


@dataclass(frozen=True)
class MailConfig:
    """Outgoing mail policy."""

    loop_header: str = "X-Ticketd-Loop"
    # Automatic mails to one address per rolling hour before the loop brake holds them back.
    auto_reply_limit: int = field(default=5, metadata=spec(int_range(0)))
    # Hours after a permanent bounce during which no automatic mail goes to that address.
    bounce_hold_hours: int = field(default=72, metadata=spec(int_range(0)))
    # authserv-ids of OUR receiving servers (RFC 8601): only their Authentication-Results
    # headers are believed; empty = no header is believed.
    trusted_authserv_ids: tuple[str, ...] = ()
    # The largest mail we send (bytes, as on the wire); attachments that would take a mail
    # past it are left out (the mail still lists them).
    max_outgoing_bytes: int = field(default=20 * 1024 * 1024,
                                    metadata=spec(int_range(64 * 1024)))
    # New tickets one sender (its normalised mailbox) may open per rolling hour; further new
    # mail from it is quarantined with the reason ("rate limit: ..."). 0: no limit.
    max_new_tickets_per_hour: int = field(default=10, metadata=spec(int_range(0)))
    # The same for a whole sender domain; 0 (the default): no limit, since most requesters
    # usually share the company's own domain.
    max_new_tickets_per_domain_hour: int = field(default=0, metadata=spec(int_range(0)))
    # VERP: each mail's envelope sender is support+<tag>@domain, the tag naming that mail and
    # recipient unforgeably (daemon/verp.py); a bounce that comes back to it holds exactly that
    # recipient. Off: the envelope sender is the support address.
    verp: bool = False
    # Body text read from one incoming mail (decoded bytes, all text parts together); the
    # rest is cut at a line end and the cut listed in the mail's defects. The raw mail is
    # kept whole.
    max_body_bytes: int = field(default=1024 * 1024,
                                metadata=spec(int_range(4096, 64 * 1024 * 1024)))


@dataclass(frozen=True)
class SlaConfig:
    """The standard process's clocks, in minutes / hours / days."""

    # Assignment deadlines from submission, per priority (minutes).
    assign_p0: int = field(default=15, metadata=spec(int_range(1, 100000)))
    assign_p1: int = field(default=30, metadata=spec(int_range(1, 100000)))
    assign_p2: int = field(default=60, metadata=spec(int_range(1, 100000)))
    assign_p3: int = field(default=120, metadata=spec(int_range(1, 100000)))
    # A need_info ticket with no answer gets one reminder after this long, and is closed after
    # twice this long.
    need_info_reply_hours: int = field(default=72, metadata=spec(int_range(1, 100000)))
    # A requester's mail to a ticket closed longer ago than this opens a new, linked ticket.
    reopen_days: int = field(default=14, metadata=spec(int_range(0, 3650)))

    def assign_minutes(self, priority: str) -> int:
        return {"P0": self.assign_p0, "P1": self.assign_p1, "P2": self.assign_p2,
                "P3": self.assign_p3}.get(priority, self.assign_p2)


@dataclass(frozen=True)
class TeamConfig:
    """One ``[[teams]]`` entry: who handles what. Every member and lead is a handler."""

    name: str = field(default="", metadata=spec(Check("a team name (letters, digits, - or _)",
                                                      lambda v: bool(_NAME.fullmatch(v)))))
    label_zh: str = ""   # what Chinese-writing requesters read, e.g. "运维组"
    label_en: str = ""   # what English-writing requesters read, e.g. "Operations"
    # Addresses, optionally with a display name: "王工 <wang@corp.example>".
    lead: str = field(default="", metadata=spec(Check("an e-mail address",
                                                      lambda v: not v or _is_mailbox(v))))
    members: tuple[str, ...] = ()
    assign: str = field(default="round_robin", metadata=spec(one_of("round_robin",
                                                                    "least_open")))


@dataclass(frozen=True)
class CategoryConfig:
    """One ``[[categories]]`` entry: a problem type, its team, words and required details."""

    name: str = ""       # as stored and shown to Chinese readers, e.g. "系统故障"
    label_en: str = ""   # shown to English readers, e.g. "System failure"
    team: str = ""       # the team tickets of this type are routed to
    keywords: tuple[str, ...] = ()   # matched case-insensitively (ASCII on word boundaries)
    required: tuple[str, ...] = ()   # field names a report must carry before assignment


@dataclass(frozen=True)
class SystemConfig:
    """One ``[[systems]]`` entry: a system or product requesters name (OA, CRM, VPN ...)."""

    name: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class TemplatesConfig:
    dir: str = field(default="templates/mail", metadata=spec(path=True))


def is_loopback(value: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    if value == "localhost":
        return True
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False


_LOOPBACK = Check('a loopback address such as "127.0.0.1"', is_loopback)


@dataclass(frozen=True)
class HttpConfig:
    """Optional loopback endpoint of `ticketd run`: /healthz and Prometheus /metrics."""

    enabled: bool = False
    host: str = field(default="127.0.0.1", metadata=spec(_LOOPBACK))
    port: int = field(default=9465, metadata=spec(int_range(1, 65535)))


@dataclass(frozen=True)
class LmtpConfig:
    """Optional LMTP server: the site's MTA hands mail straight to ticketd (no IMAP delay)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = field(default=8024, metadata=spec(int_range(1, 65535)))
    socket: str = field(default="", metadata=spec(path=True))  # Unix socket instead of a port


@dataclass(frozen=True)
class LoggingConfig:
    level: str = field(default="info", metadata=spec(one_of("debug", "info", "warning", "error")))
    format: str = field(default="text", metadata=spec(one_of("text", "json")))


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``path`` is the file it came from (None: embedded defaults)."""

    support: SupportConfig = SupportConfig()
    tickets: TicketsConfig = TicketsConfig()
    database: DatabaseConfig = DatabaseConfig()
    imap: ImapConfig = ImapConfig()
    smtp: SmtpConfig = SmtpConfig()
    attachments: AttachmentsConfig = AttachmentsConfig()
    mail: MailConfig = MailConfig()
    templates: TemplatesConfig = TemplatesConfig()
    logging: LoggingConfig = LoggingConfig()
    http: HttpConfig = HttpConfig()
    lmtp: LmtpConfig = LmtpConfig()
    sla: SlaConfig = SlaConfig()
    teams: tuple[TeamConfig, ...] = ()
    categories: tuple[CategoryConfig, ...] = ()
    systems: tuple[SystemConfig, ...] = ()
    path: Path | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @cached_property
    def own_addresses(self) -> frozenset[str]:
        """Every address that is ours: the support address, aliases, each mailbox's address."""
        extra = {m.address.lower() for m in self.imap.mailboxes if m.address}
        return self.support.own_addresses | extra

    @cached_property
    def own_mailboxes(self) -> frozenset[str]:
        """:attr:`own_addresses` normalised: ``support+anything@`` (a VERP address, a tag
        someone wrote) delivers to ``support@`` and is just as much ours."""
        return frozenset(normalize(a) for a in self.own_addresses)

    def is_own(self, address: str) -> bool:
        """One of our mailboxes, whatever ``+tag`` it carries."""
        return normalize(address) in self.own_mailboxes


T = TypeVar("T")

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _show(value: Any) -> str:
    if isinstance(value, str):
        value = _URL_PASSWORD.sub(r"\1***@", value)  # never echo a password in a URL
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _coerce(kind: Any, value: Any) -> tuple[Any, str | None]:
    """Check a TOML value against a field type; returns (value, expected-if-wrong)."""
    if get_origin(kind) is tuple:
        (inner, _) = get_args(kind)
        if dataclasses.is_dataclass(inner):  # a list of tables: each is read by _section
            ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
            return value, None if ok else "a list of tables"
        ok = isinstance(value, list) and all(isinstance(v, inner) for v in value)
        return (tuple(value) if ok else value), (None if ok else "a list of strings")
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value, None if ok else "an integer"
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else value, None if ok else "a number"
    return value, None if isinstance(value, kind) else _TYPE_NAMES.get(kind, str(kind))


def _section(cls: type[T], table: Any, name: str, where: str, base: Path) -> T:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{name}]: expected a table, got {_show(table)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: [{name}] {key}: unknown key (known keys: {known})")
        meta: Mapping[str, Any] = fields[key].metadata
        value, expected = _coerce(hints[key], raw)
        check: Check | None = meta.get("check")
        if check is not None and (expected is not None or not check.ok(value)):
            expected = check.expected
        if expected is not None:
            raise ConfigError(f"{where}: [{name}] {key}: expected {expected}, got {_show(value)}")
        if meta.get("path") and value:
            value = str((base / value).resolve()) if not Path(value).is_absolute() else value
        if key == "mailboxes":
            value = tuple(_section(MailboxConfig, item, f"{name}.mailboxes][{index}", where, base)
                          for index, item in enumerate(value))
        elif isinstance(value, tuple) and get_args(hints[key])[0] is str:
            _check_addresses(key, value, f"[{name}] {key}", where)
        values[key] = value
    for key, f in fields.items():
        if key not in values and f.metadata.get("path"):
            default = f.default
            if isinstance(default, str) and default and not Path(default).is_absolute():
                values[key] = str((base / default).resolve())
    return cls(**values)


def from_mapping(data: Mapping[str, Any], *, where: str, base: Path,
                 path: Path | None = None) -> Config:
    """Build a Config from parsed TOML; errors name ``where`` (the file) and the key."""
    sections: dict[str, Any] = {}
    hints = get_type_hints(Config)
    known = [f.name for f in dataclasses.fields(Config) if f.name != "path"]
    for name, table in data.items():
        if name not in known:
            raise ConfigError(
                f"{where}: [{name}]: unknown section (known sections: {', '.join(known)})"
            )
        if get_origin(hints[name]) is tuple:  # [[teams]], [[categories]], [[systems]]
            if not isinstance(table, list) or not all(isinstance(t, dict) for t in table):
                raise ConfigError(f"{where}: [[{name}]]: expected a list of tables "
                                  f"([[{name}]] entries), got {_show(table)}")
            (inner, _) = get_args(hints[name])
            sections[name] = tuple(_section(inner, item, f"{name}][{index}", where, base)
                                   for index, item in enumerate(table))
            continue
        sections[name] = _section(hints[name], table, name, where, base)
    for name in known:
        if name not in sections and get_origin(hints[name]) is not tuple:
            sections[name] = _section(hints[name], {}, name, where, base)
    config = Config(**sections, path=path)
    _cross_checks(config, where)
    return config


_ADDRESS_LISTS = frozenset({"members"})


def _check_addresses(key: str, values: tuple[str, ...], label: str, where: str) -> None:
    if key not in _ADDRESS_LISTS:
        return
    for value in values:
        if not _is_mailbox(value):
            raise ConfigError(f"{where}: {label}: expected e-mail addresses "
                              f'("a@corp.example" or "Name <a@corp.example>"), got {_show(value)}')


def _cross_checks(config: Config, where: str) -> None:
    _process_checks(config, where)
    imap = config.imap
    if imap.host and not imap.username:
        raise ConfigError(f"{where}: [imap] username: expected a user name when host is set")
    for index, box in enumerate(imap.mailboxes):
        if not (box.host or imap.host):
            raise ConfigError(f"{where}: [imap.mailboxes][{index}] host: expected a host "
                              "(here or in [imap])")
        if not (box.username or imap.username):
            raise ConfigError(f"{where}: [imap.mailboxes][{index}] username: expected a user "
                              "name (here or in [imap])")
    if imap.password_env and imap.password_file:
        raise ConfigError(f"{where}: [imap] password_env and password_file: set only one")
    if config.smtp.password_env and config.smtp.password_file:
        raise ConfigError(f"{where}: [smtp] password_env and password_file: set only one")
    if config.mail.verp and not verp.room_for_tag(config.support.address):
        local = config.support.address.rpartition("@")[0]
        raise ConfigError(
            f"{where}: [mail] verp: the local part of [support] address is {len(local)} "
            f"characters; VERP adds {1 + verp.MAX_TAG} and RFC 5321 allows 64, so expected at "
            f"most {verp.MAX_LOCAL_PART - 1 - verp.MAX_TAG}")
    if config.attachments.max_bytes > config.attachments.max_message_bytes:
        raise ConfigError(
            f"{where}: [attachments] max_bytes: expected at most max_message_bytes "
            f"({config.attachments.max_message_bytes}), got {config.attachments.max_bytes}"
        )


def _process_checks(config: Config, where: str) -> None:
    """Teams and categories refer to each other by name: every reference must resolve."""
    seen: set[str] = set()
    for index, team in enumerate(config.teams):
        if not team.name:
            raise ConfigError(f"{where}: [[teams]][{index}] name: expected a team name")
        if team.name in seen:
            raise ConfigError(f"{where}: [[teams]][{index}] name: duplicate team "
                              f"{_show(team.name)}")
        seen.add(team.name)
    names: set[str] = set()
    for index, cat in enumerate(config.categories):
        if not cat.name:
            raise ConfigError(f"{where}: [[categories]][{index}] name: expected a category name")
        if cat.name in names:
            raise ConfigError(f"{where}: [[categories]][{index}] name: duplicate category "
                              f"{_show(cat.name)}")
        names.add(cat.name)
        if not cat.team:
            raise ConfigError(f"{where}: [[categories]][{index}] team: expected a team name")
        if seen and cat.team not in seen:
            raise ConfigError(f"{where}: [[categories]][{index}] team: unknown team "
                              f"{_show(cat.team)} (teams: {', '.join(sorted(seen))})")
    if seen and not config.categories:
        absent = [t for t in BUILTIN_TEAMS if t not in seen]
        if absent:
            raise ConfigError(f"{where}: [[teams]]: the built-in categories route to "
                              f"{', '.join(BUILTIN_TEAMS)}; define team(s) "
                              f"{', '.join(absent)} or configure [[categories]]")
    for index, box in enumerate(config.imap.mailboxes):
        if seen and box.team and box.team not in seen:
            raise ConfigError(f"{where}: [imap.mailboxes][{index}] team: unknown team "
                              f"{_show(box.team)} (teams: {', '.join(sorted(seen))})")
    for index, system in enumerate(config.systems):
        if not system.name:
            raise ConfigError(f"{where}: [[systems]][{index}] name: expected a system name")


def default_path() -> Path:
    """$TICKETD_CONFIG, else ./config.toml."""
    return Path(os.environ.get("TICKETD_CONFIG") or "config.toml")


def load(path: Path | None = None) -> Config:
    """Load and validate a config file.

    With no path given and no ``./config.toml`` or ``$TICKETD_CONFIG``, the embedded defaults
    are used with the current directory as the base, so a newcomer needs no file at all.
    """
    explicit = path is not None or "TICKETD_CONFIG" in os.environ
    path = path or default_path()
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: config file not found")
        return from_mapping({}, where=str(path), base=Path.cwd())
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return from_mapping(data, where=str(path), base=path.parent.resolve(), path=path.resolve())
