"""Turn header and body bytes into text, repairing the charset labels real mail gets wrong.

Why this module exists: the charset a message declares is often not the one its bytes are in.
Chinese clients label GBK text "gb2312", Taiwanese ones send HKSCS characters as "big5",
Outlook labels windows-1252 as "iso-8859-1", webmail sends UTF-8 labelled as Latin-1, and old
clients put raw 8-bit bytes in headers with no label at all. Decoding with the label alone
(as ``email`` and mail-parser do) turns such text into replacement characters or mojibake.

The rules, in order, for one run of bytes (:func:`decode_bytes`):

1. 7-bit bytes with ISO-2022 escape sequences are ISO-2022-JP (with Microsoft's extensions,
   :mod:`daemon.intake.iso2022jp`) or -KR, whatever the label says. Other pure ASCII decodes
   as ASCII (unless the label is a 7-bit encoding such as ISO-2022-JP).
2. Bytes that are valid UTF-8 (and not pure ASCII) are UTF-8, whatever the label says: genuine
   legacy text is almost never valid UTF-8.
3. The declared label is widened to its superset: gb2312/gbk -> gb18030 (always, and noted),
   big5 -> big5hkscs -> cp950, shift_jis -> cp932, euc-kr -> cp949, iso-2022-jp -> cp50221,
   iso-8859-1 with C1 bytes -> windows-1252. When no superset decodes the bytes, the label's
   siblings are tried (ISO-2022-JP that is really Shift_JIS or EUC-JP, Big5 that is GBK).
4. Otherwise (no label, or an unusable one) every candidate is decoded and the one that reads
   most like text wins (:mod:`daemon.intake.plausibility`): the charsets the same message
   declares or its body was found in (``hints``, with a small bonus: the language of the
   body is preferred), the charsets mail is usually sent in, and charset-normalizer's guess.
5. Mostly-UTF-8 bytes (a character cut off at the end, a stray Latin-1 byte) are UTF-8, the
   stray byte read as windows-1252 after ASCII and as U+FFFD after a cut character.
6. Otherwise the most plausible decoding is taken ("detected as"), or the bytes are decoded
   with replacement characters, and the note says so.

Every body part and every header that was encoded or repaired yields a :class:`CharsetNote`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from charset_normalizer import from_bytes

from daemon.intake import iso2022jp, plausibility
from daemon.intake.parsed import CharsetNote

__all__ = [
    "ENCODED_WORD",
    "Decoded",
    "canonical_codec",
    "decode_bytes",
    "decode_header_value",
    "raw_bytes",
]

# Labels that mean "nothing declared".
_UNLABELLED = frozenset({"", "unknown-8bit", "x-unknown", "unknown", "default", "8bit", "binary"})

# Codecs to try, widest useful first, for a declared (canonical Python) codec.
_WIDENED: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "big5": ("big5", "big5hkscs", "cp950"),
    "shift_jis": ("shift_jis", "cp932"),
    "euc_jp": ("euc_jp", "euc_jis_2004"),
    "euc_kr": ("euc_kr", "cp949"),
    "iso2022_jp": ("iso2022_jp", iso2022jp.NAME, "iso2022_jp_ext", "iso2022_jp_2"),
    iso2022jp.NAME: (iso2022jp.NAME,),
}

# Labels mail clients send that Python does not know (after the WHATWG encoding labels).
_ALIASES = {
    "x-gbk": "gbk", "gb_2312-80": "gbk", "gb2312_charset": "gbk", "chinese": "gbk",
    "csgb2312": "gbk", "iso-ir-58": "gbk", "x-euc-cn": "gbk", "x-mac-chinesesimp": "gbk",
    "x-sjis": "cp932", "windows-31j": "cp932", "ms_kanji": "cp932", "csshiftjis": "cp932",
    "x-ms-cp932": "cp932", "x-euc-jp": "euc_jp", "cseucpkdfmtjapanese": "euc_jp",
    "x-x-big5": "big5", "csbig5": "big5", "big5-tw": "big5", "x-mac-chinesetrad": "big5",
    "x-windows-949": "cp949", "windows-949": "cp949", "ks_c_5601-1989": "cp949",
    "windows-874": "cp874", "iso-8859-11": "cp874", "tis-620": "cp874", "x-cp1250": "cp1250",
    "x-cp1251": "cp1251", "iso-8859-8-i": "iso8859-8", "iso-10646-ucs-2": "utf-16-be",
    "cp-850": "cp850", "x-mac-roman": "mac-roman", "macintosh": "mac-roman",
}

# Microsoft's names for ISO-2022-JP with its extensions (see daemon.intake.iso2022jp).
_MICROSOFT_JIS = frozenset({"cp50220", "cp50221", "cp50222", "csiso2022jp", "iso-2022-jp-ms",
                            "x-iso-2022-jp-ms"})

# Codecs whose text is 7-bit bytes: ASCII input still needs the codec.
_SEVEN_BIT = frozenset(
    {iso2022jp.NAME, "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_ext",
     "iso2022_kr", "hz", "utf-7"}
)
_UNICODE = frozenset({"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le",
                      "utf-32-be", "utf-8-sig"})
_LATIN1_LIKE = frozenset({"latin-1", "iso8859-1", "ascii"})
_C1_BYTES = re.compile(rb"[\x80-\x9f]")

# Names people read in notes: the codec Python uses, spelled as mail labels spell it.
_DISPLAY = {"ascii": "us-ascii"}


@dataclass(frozen=True)
class Decoded:
    """Text produced from bytes plus the notes saying how it was decoded."""

    text: str
    notes: tuple[CharsetNote, ...] = ()


def canonical_codec(label: str | None) -> str | None:
    """Python's canonical codec name for a mail charset label, or None if unknown/absent."""
    if label is None:
        return None
    cleaned = label.strip().strip("\"'").lower()
    if cleaned in _UNLABELLED:
        return None
    if cleaned in {"ks_c_5601-1987", "ks_c_5601", "ksc5601"}:
        return "euc_kr"
    cleaned = _ALIASES.get(cleaned, cleaned)
    if cleaned in _MICROSOFT_JIS:
        return iso2022jp.NAME
    try:
        return codecs.lookup(cleaned).name
    except (LookupError, ValueError):
        return None


def _display(codec: str) -> str:
    if codec in _DISPLAY:
        return _DISPLAY[codec]
    if codec.startswith("iso8859-"):
        return "iso-8859-" + codec.removeprefix("iso8859-")
    if codec.startswith("iso2022_"):
        return "iso-2022-" + codec.removeprefix("iso2022_").replace("_", "-")
    if re.fullmatch(r"cp125\d", codec):
        return "windows-" + codec.removeprefix("cp")
    return codec.replace("_", "-")


_CUSTOM = {iso2022jp.NAME: iso2022jp.decode}


def _try(data: bytes, codec: str) -> str | None:
    try:
        custom = _CUSTOM.get(codec)
        return custom(data) if custom else data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _candidates(codec: str, data: bytes) -> tuple[str, ...]:
    if codec in _LATIN1_LIKE:
        return ("cp1252", "iso8859-1") if _C1_BYTES.search(data) else ("iso8859-1",)
    return _WIDENED.get(codec, (codec,))


_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_ESCAPED_BYTES = "".join(chr(0xDC80 + i) for i in range(128))


def _stray_byte(match: re.Match[str]) -> str:
    """One byte that is not UTF-8 inside UTF-8 text. After ASCII it is a Latin-1 letter that a
    legacy system added ("Hofj\xe4geralle" beside "Grüße"), read as windows-1252; right after
    another non-ASCII character it is what is left of a character cut in half: U+FFFD."""
    byte = ord(match.group()) - 0xDC00
    start = match.start()
    after_ascii = start == 0 or match.string[start - 1].isascii()
    return bytes([byte]).decode("cp1252") if byte >= 0xA0 and after_ascii else "\ufffd"


def _nearly_utf8(data: bytes) -> tuple[str, int, int] | None:
    """Mostly-UTF-8 bytes: (text, bytes read as windows-1252, replacement characters).

    A character cut off at the end stays U+FFFD; a stray 8-bit byte inside the text is read
    as windows-1252. The rest must really look like UTF-8: a lone Latin-1 byte is not "nearly
    UTF-8", and at most a few bytes (2, or one in 500) may be broken.
    """
    escaped = data.decode("utf-8", "surrogateescape")
    stripped = escaped.rstrip(_ESCAPED_BYTES)
    cut = len(escaped) - len(stripped)
    stray = len(_ESCAPED_BYTE.findall(stripped))
    bad = stray + cut
    if not bad or len(_UTF8_MULTIBYTE.findall(data)) <= bad:
        return None
    if bad > max(2, len(escaped) // 500):
        return None
    text = _ESCAPED_BYTE.sub(_stray_byte, stripped)
    replaced = text.count("\ufffd") - stripped.count("\ufffd")
    text += "\ufffd" * min(cut, 1)
    return text, stray - replaced, replaced + min(cut, 1)


def _nearly(data: bytes, codec: str) -> str | None:
    """``data`` decoded with ``codec`` if only a few bytes are broken (a cut-off character)."""
    try:
        text = data.decode(codec, errors="replace")
    except LookupError:
        return None
    bad = text.count("\ufffd") - data.decode("latin-1").count("\ufffd")
    return text if bad <= max(2, len(text) // 500) else None


# Short runs (headers, names) carry too little signal to choose among every codec:
# charset-normalizer then chooses among the charsets mail is actually sent in.
_SHORT = 200
_MAIL_CHARSETS = ["utf_8", "cp1252", "gb18030", "big5", "shift_jis", "euc_kr", "cp1251",
                  "koi8_r", "iso8859_2", "cp1250"]
# Codecs every unlabelled run is also tried in, the order breaking ties (cp1252 before
# iso-8859-2: "naïve" is likelier than "naďve").
_USUAL = ("gb18030", "big5hkscs", "cp932", "cp949", "euc_jp", "cp1252", "cp1251", "iso8859-2",
          "koi8_r")
# Codecs of the same language to try when the declared one cannot decode the bytes
# (ISO-2022-JP that is really Shift_JIS, and the reverse).
_SIBLINGS: dict[str, tuple[str, ...]] = {
    "iso2022_jp": ("cp932", "euc_jp"),
    "iso2022_jp_2": ("cp932", "euc_jp"),
    "iso2022_jp_ext": ("cp932", "euc_jp"),
    iso2022jp.NAME: ("cp932", "euc_jp"),
    "shift_jis": ("euc_jp",),
    "cp932": ("euc_jp",),
    "euc_jp": ("cp932",),
    "big5": ("gb18030",),
    "big5hkscs": ("gb18030",),
    "cp950": ("gb18030",),
}
# ISO-2022 text whatever its label: 7-bit bytes with escape sequences.
_ISO2022 = ("iso2022_jp", iso2022jp.NAME, "iso2022_jp_2", "iso2022_jp_2004", "iso2022_kr")
_HINT_BONUS = 1.5


def _detect(data: bytes) -> str | None:
    if len(data) < _SHORT:
        best = from_bytes(data, cp_isolation=_MAIL_CHARSETS).best()
    else:
        best = from_bytes(data).best()
    if best is None:
        return None
    return canonical_codec(best.encoding)


@dataclass(frozen=True)
class _Choice:
    text: str
    codec: str
    source: str  # "hint" | "detected"


def _most_plausible(data: bytes, codecs_: Iterable[tuple[str, str, float]]) -> _Choice | None:
    """The candidate decoding that reads most like text (ties: the first one)."""
    best: tuple[float, _Choice] | None = None
    seen: set[str] = set()
    for codec, source, bonus in codecs_:
        name = _name(codec)
        if name in seen:
            continue
        seen.add(name)
        text = _try(data, codec)
        if text is None:
            continue
        value = plausibility.score(text) + bonus
        if best is None or value > best[0]:
            best = (value, _Choice(text, name, source))
    return best[1] if best else None


def _name(codec: str) -> str:
    if codec in _CUSTOM:
        return codec
    try:
        return codecs.lookup(codec).name
    except LookupError:
        return codec


def _first_clean(data: bytes, label: str) -> str | None:
    """The first codec that decodes ``data`` among those a label stands for."""
    codec = canonical_codec(label)
    if codec is None or codec in _SEVEN_BIT:
        return None
    for candidate in _candidates(codec, data):
        if _try(data, candidate) is not None:
            return candidate
    return None


def decode_bytes(
    data: bytes, declared: str | None, where: str, hints: Iterable[str] = ()
) -> tuple[str, CharsetNote]:
    """Decode one run of bytes, returning the text and the note that says how.

    ``declared`` is the label as the mail gives it; ``hints`` are other labels from the same
    message (declared by its parts, or detected in its body), preferred when the bytes carry
    no (usable) label.
    """
    label = declared.strip().strip("\"'").lower() if declared else None
    label = label or None
    codec = canonical_codec(label)
    shown = label if label and label not in _UNLABELLED else None

    def note(used: str, repair: str | None = None) -> CharsetNote:
        return CharsetNote(where=where, declared=shown, used=used, repair=repair)

    def said() -> str:
        return f"{shown} declared" if shown else "no charset declared"

    if data.isascii() and b"\x1b" in data and codec not in _SEVEN_BIT:
        for candidate in _ISO2022:
            text = _try(data, candidate)
            if text is not None:
                return text, note(_display(candidate), f"{said()}, decoded as "
                                  f"{_display(candidate)} (escape sequences in the text)")

    if data.isascii() and codec not in _SEVEN_BIT and codec not in _UNICODE - {"utf-8"}:
        return data.decode("ascii"), note(_display(codec) if codec else "us-ascii")

    if codec not in _UNICODE:
        as_utf8 = _try(data, "utf-8")
        if as_utf8 is not None and not data.isascii():
            return as_utf8, note("utf-8", f"{said()}, decoded as utf-8")

    if codec is not None:
        for candidate in _candidates(codec, data):
            text = _try(data, candidate)
            if text is None:
                continue
            repair = None
            if _name(candidate) != codec:
                repair = f"{said()}, decoded as {_display(candidate)}"
            return text, note(_display(candidate), repair)
        sibling = _most_plausible(data, ((c, "detected", 0.0) for c in _SIBLINGS.get(codec, ())))
        if sibling is not None:
            return sibling.text, note(_display(sibling.codec), f"{said()}, decoded as "
                                      f"{_display(sibling.codec)} (the declared charset cannot "
                                      "decode the bytes)")

    hinted = [(c, "hint", _HINT_BONUS) for c in
              (_first_clean(data, hint) for hint in hints) if c is not None and c != codec]
    detected = _detect(data)
    # The usual suspects first: where two decodings read the same, "windows-1252" is the
    # better name for German than the "windows-1250" detection may return.
    guesses = [(c, "detected", 0.0) for c in _USUAL]
    guesses += [(c, "detected", 0.0) for c in
                ((detected,) if detected is not None and (
                    b"\x00" in data or not detected.startswith(("utf-16", "utf-32"))) else ())]
    choice = _most_plausible(data, [*hinted, *guesses])
    if choice is not None and choice.source == "hint":
        return choice.text, note(_display(choice.codec), f"{said()}, decoded as "
                                 f"{_display(choice.codec)} (charset of the same message)")

    base = (_candidates(codec, data)[0] if codec else None) or "utf-8"
    if _name(base) == "utf-8":
        mostly = _nearly_utf8(data)
        if mostly is not None:
            text, stray, bad = mostly
            parts = [f"{stray} stray byte{'s' if stray > 1 else ''} read as windows-1252"
                     if stray else "", f"{bad} replacement character{'s' if bad > 1 else ''}"
                     if bad else ""]
            return text, note("utf-8", f"{said()}, decoded as utf-8 with "
                              + " and ".join(p for p in parts if p))
    elif base not in _CUSTOM:
        lenient = _nearly(data, base)
        if lenient is not None:
            bad = lenient.count("\ufffd")
            return lenient, note(_display(base), f"{said()}, decoded as {_display(base)} "
                                 f"with {bad} replacement character{'s' if bad > 1 else ''}")

    if choice is not None:
        return choice.text, note(_display(choice.codec), f"{said()}, detected as "
                                 f"{_display(choice.codec)}")

    text = data.decode(base if base not in _CUSTOM else "utf-8", errors="replace")
    return text, note(_display(base),
                      f"{said()}, decoded as {_display(base)} with replacement characters")


def raw_bytes(value: str) -> bytes:
    """The original bytes of a header value parsed by ``email`` from bytes (surrogateescape)."""
    return value.encode("utf-8", "surrogateescape")


# RFC 2047 encoded word; the charset may carry an RFC 2231 language suffix (=?utf-8*en?Q?..?=).
# The text may hold spaces, as real clients write it (=?us-ascii?Q?ABC / 123?=, a leading
# space, a fold inside the word); it never holds "?", so a match ends at the first "?=".
_ENCODED_WORD = re.compile(
    r"=\?(?P<charset>[^?\s*]+)(?:\*[^?\s]*)?\?(?P<enc>[bBqQ])\?(?P<text>[^?]*)\?="
)
ENCODED_WORD = _ENCODED_WORD
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_BASE64_NOISE = re.compile(r"[^A-Za-z0-9+/]")
# Whitespace inside a quoted-printable escape ("=C3= BC", "=C 3"): a fold inside the word.
_Q_FOLDED_ESCAPE = re.compile(r"(=[0-9A-Fa-f]?)[ \t]+")


def _decode_b(text: str) -> bytes:
    cleaned = _BASE64_NOISE.sub("", text)
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned)
    except (binascii.Error, ValueError):
        # One stray character too many: drop it rather than lose the word.
        return base64.b64decode(cleaned.rstrip("=")[: len(cleaned.rstrip("=")) // 4 * 4])


def _decode_q(text: str) -> bytes:
    text = _Q_FOLDED_ESCAPE.sub(r"\1", text)
    return quopri.decodestring(text.replace("_", " ").encode("ascii", "replace"), header=True)


def _words_bytes(words: list[tuple[str, str]]) -> bytes:
    """The bytes of adjacent encoded words in one charset.

    Base64 words are joined before decoding while the joined text is not a whole number of
    4-character groups: some clients split a word in the middle of a group.
    """
    out: list[bytes] = []
    pending = ""
    pending_length = 0
    for enc, text in words:
        if enc in "bB":
            pending += text
            pending_length += len(_BASE64_NOISE.sub("", text.rstrip("=")))
            if pending_length % 4 == 0 or text.rstrip().endswith("="):
                out.append(_decode_b(pending))
                pending, pending_length = "", 0
            continue
        if pending:
            out.append(_decode_b(pending))
            pending, pending_length = "", 0
        out.append(_decode_q(text))
    if pending:
        out.append(_decode_b(pending))
    return b"".join(out)


def _plain_run(value: str, where: str, hints: tuple[str, ...]) -> tuple[str, list[CharsetNote]]:
    """Text between encoded words: ASCII, or raw 8-bit bytes carried as surrogates."""
    data = raw_bytes(value)
    if data.isascii() and "\x1b" not in value:
        return value, []
    text, note = decode_bytes(data, None, where, hints)
    return text, [note]


def decode_header_value(value: str, where: str, hints: Iterable[str] = ()) -> Decoded:
    """Unfold and decode one raw header value (RFC 2047 words, raw 8-bit bytes, or ASCII).

    Adjacent encoded words in the same charset are joined *before* decoding, because clients
    split multi-byte characters across words; whitespace between encoded words is dropped as
    RFC 2047 section 6.2 requires.
    """
    hint_list = tuple(hints)
    unfolded = _FOLD.sub("", value)
    pieces: list[str] = []
    notes: list[CharsetNote] = []
    pending: list[tuple[str, str]] = []
    pending_charset: str | None = None
    position = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            text, note = decode_bytes(_words_bytes(pending), pending_charset, where, hint_list)
            pieces.append(text)
            notes.append(note)
        pending, pending_charset = [], None

    for match in _ENCODED_WORD.finditer(unfolded):
        between = unfolded[position : match.start()]
        if between and (pending_charset is None or between.strip(" \t")):
            flush()
            text, run_notes = _plain_run(between, where, hint_list)
            pieces.append(text)
            notes.extend(run_notes)
        charset = match["charset"].lower()
        if pending_charset is not None and charset != pending_charset:
            flush()
        pending_charset = charset
        pending.append((match["enc"], match["text"]))
        position = match.end()
    flush()
    tail = unfolded[position:]
    if tail:
        text, run_notes = _plain_run(tail, where, hint_list)
        pieces.append(text)
        notes.extend(run_notes)
    text = "".join(pieces)
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    return Decoded(text=text.strip(), notes=_dedupe(notes))


def _dedupe(notes: Iterable[CharsetNote]) -> tuple[CharsetNote, ...]:
    seen: dict[CharsetNote, None] = {}
    for note in notes:
        seen.setdefault(note, None)
    return tuple(seen)
