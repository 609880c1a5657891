"""Salvage a mailbox from an address that a strict parser rejects but a person can read.

Why this module exists: a mail without an author cannot become a ticket, yet real senders
write ``From:`` headers that RFC 5322 rejects and that every mail client still shows with an
address: ``Claudia.Shu@yahoo.com.`` (a trailing dot), ``Test test@example.com`` and
``power quadrant system@example.com`` (a display name without quotes or angle brackets),
``"Some Name"@example.com>`` (a stray bracket), ``John <john@example.com`` (an unclosed one),
or a bare ``MAILER-DAEMON`` from a mail system. :func:`salvage` reads such an item the way
clients do and says what it repaired; the parser records that sentence in ``defects``, so
``ticketd inspect`` shows it. An item with no plausible address at all stays unread, and a
mail left without any author is still quarantined.

The rules, for one address item (after mail-parser gave up on it):

1. An angle bracket wins: the text between ``<`` and the next ``>`` (or the end) is the
   address, the text before it the name.
2. A quoted local part (``"Some Name"@example.com``) is kept quoted, as RFC 5322 allows.
3. Otherwise the last whitespace-separated word with an ``@`` is the address and the words
   before it are the name (``Test test@example.com`` -> ``Test <test@example.com>``).
4. Brackets, quotes and punctuation around the address and trailing dots are dropped; what
   is left must be ``local@domain`` with a valid local part and domain labels.
5. A bare mail-system name (``MAILER-DAEMON``, ``postmaster``) is qualified with the domain
   of the message's own Message-ID or first Received host (given by the caller).

Every step is a scan or a split over the item; no regular expression here backtracks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAIL_SYSTEM_NAMES", "Salvaged", "salvage", "salvage_system_sender"]

# Local parts that mail systems send from without a domain (bounces, postmaster notices).
MAIL_SYSTEM_NAMES = frozenset({"mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster"})

# RFC 5322 atext plus the dot; anything else makes a local part unplausible.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_AROUND = "<>()[]{}\"',;:"


@dataclass(frozen=True)
class Salvaged:
    """A mailbox read from a broken address item, and the sentence that says how."""

    name: str
    email: str
    repair: str


def _domain_ok(domain: str) -> bool:
    if not domain or len(domain) > 253:
        return False
    for label in domain.split("."):
        if not label or len(label) > 63:
            return False
        if label.isascii() and not _LABEL.fullmatch(label):
            return False
        if not label.isascii() and not all(ch.isalnum() or ch == "-" for ch in label):
            return False  # an internationalised label: letters, digits and hyphens
    return True


def _local_ok(local: str) -> bool:
    if not local or len(local) > 64:
        return False
    if local.startswith('"') and local.endswith('"') and len(local) > 2:
        inner = local[1:-1]
        return '"' not in inner and "\\" not in inner and inner.isprintable()
    if local.startswith(".") or ".." in local:
        return False
    return bool(_LOCAL.fullmatch(local)) or (not local.isascii() and all(
        ch.isalnum() or ch in "._-+" for ch in local))


def _clean(token: str) -> tuple[str, list[str]] | None:
    """``local@domain`` from a token with junk around it, and what was dropped."""
    dropped: list[str] = []
    stripped = token.strip(_AROUND + " \t")
    if stripped != token.strip():
        dropped.append("stray brackets or quotes")
    if stripped.lower().startswith("mailto:"):
        stripped = stripped[len("mailto:"):]
        dropped.append("mailto: prefix")
    if stripped.endswith("."):
        stripped = stripped.rstrip(".")
        dropped.append("trailing dot")
    local, at, domain = stripped.rpartition("@")
    if not at:
        return None
    local = local.strip()
    domain = domain.strip().rstrip(".").lower()
    if ".." in domain:
        domain = ".".join(label for label in domain.split(".") if label)
        dropped.append("double dot in the domain")
    if local.startswith('"') != local.endswith('"'):
        local = local.strip('"')
    if not _local_ok(local) or not _domain_ok(domain):
        return None
    return f"{local.lower()}@{domain}", dropped


def _name(text: str) -> str:
    return " ".join(text.split()).strip(_AROUND + " ").strip()


def _quoted_local(text: str) -> tuple[str, str, str] | None:
    """``"Some Name"@example.com`` -> (text before it, the quoted local part, the rest)."""
    close = text.find('"@')
    if close <= 0:
        return None
    open_ = text.rfind('"', 0, close)
    if open_ < 0:
        return None
    return text[:open_], text[open_ : close + 1], text[close + 1 :]


def salvage(item: str) -> Salvaged | None:
    """The most plausible mailbox in one address item a strict parser rejected, or None."""
    text = " ".join(item.split())
    if "@" not in text:
        return None
    open_angle = text.find("<")
    if open_angle >= 0 and "@" in text[open_angle:]:
        inner = text[open_angle + 1 :]
        close = inner.find(">")
        cleaned = _clean(inner[:close] if close >= 0 else inner)
        if cleaned is not None:
            email, dropped = cleaned
            what = dropped + ([] if close >= 0 else ["unclosed angle bracket"])
            if close >= 0 and inner[close + 1 :].strip(" >"):
                what.append("text after the address")
            if inner[close + 1 :].strip().startswith(">"):
                what.append("stray bracket")
            return Salvaged(_name(text[:open_angle]), email,
                            ", ".join(dict.fromkeys(what)) or "malformed address")
    quoted = _quoted_local(text)
    if quoted is not None:
        before, local, rest = quoted
        token = rest.split()[0] if rest.split() else ""
        domain = token.lstrip("@").strip(_AROUND).rstrip(".").lower()
        if _local_ok(local) and _domain_ok(domain):
            what = ["quoted local part"]
            if token.lstrip("@") != domain:
                what.append("stray bracket")
            name = _name(before) or (local.strip('"') if " " in local else "")
            return Salvaged(name, f"{local.lower()}@{domain}", ", ".join(what))
    words = text.split(" ")
    for index in range(len(words) - 1, -1, -1):
        if "@" not in words[index]:
            continue
        word, glued = words[index], ""
        quote = word.rfind('"', 0, word.find("@"))
        if quote > 0:  # "Name"address@example.com: a quoted name glued to the address
            word, glued = word[quote + 1 :], word[: quote + 1]
        cleaned = _clean(word)
        if cleaned is None:
            continue
        email, dropped = cleaned
        name = _name(" ".join([*words[:index], glued]))
        after = _name(" ".join(words[index + 1 :]))
        what = list(dropped)
        if name:
            what.append("display name without quotes or angle brackets")
        if after:
            what.append("text after the address")
            name = name or after
        return Salvaged(name, email, ", ".join(what) or "malformed address")
    return None


def salvage_system_sender(item: str, domain: str | None) -> Salvaged | None:
    """A bare mail-system sender (``MAILER-DAEMON``), qualified with ``domain`` if known."""
    text = " ".join(item.split())
    comment = ""
    if "<" in text:  # Mail Delivery Subsystem <MAILER-DAEMON>
        comment, _, text = text.partition("<")
        text = text.partition(">")[0]
    elif "(" in text:  # MAILER-DAEMON (Mail Delivery System)
        text, _, comment = text.partition("(")
    text = text.strip().strip("\"' \t")
    if not text or " " in text or "@" in text or text.lower() not in MAIL_SYSTEM_NAMES:
        return None
    local = text.lower()
    if domain:
        return Salvaged(_name(comment), f"{local}@{domain.lower()}",
                        f"bare mail-system name, domain {domain.lower()} taken from the mail")
    if local == "postmaster":
        return None  # nobody to answer, and a postmaster alone is no bounce
    return Salvaged(_name(comment), local, "bare mail-system name without a domain")
