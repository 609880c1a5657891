"""ISO-2022-JP as Windows writes it (CP50220/CP50221/CP50222), which Python cannot decode.

Why this module exists: Outlook and most Japanese Windows software label mail "iso-2022-jp"
but write Microsoft's superset: the NEC special characters of row 13 (circled digits ①,
Roman numerals Ⅲ, ㈱, ㎡), the NEC-selected IBM extensions of rows 89 to 92 (髙, 﨑), and
half-width katakana (``ESC ( I`` or SO/SI). Python's ``iso2022_jp`` codecs refuse those bytes
(``iso2022_jp_ext`` and ``_3`` too, since the escape still selects JIS X 0208), so the text
came out with replacement characters.

:func:`decode` reads the escape sequences itself and decodes each JIS X 0208 run through
cp932 (Windows' Shift_JIS, which holds exactly those extensions), after the arithmetic that
maps a JIS row/cell to Shift_JIS; JIS X 0212 runs go through EUC-JP. Invalid input raises
:class:`UnicodeDecodeError` like any codec. One pass over the bytes: linear.
"""

from __future__ import annotations

__all__ = ["NAME", "decode"]

NAME = "cp50221"

_ESC = 0x1B
_SO, _SI = 0x0E, 0x0F
_SINGLE = {b"(B": "ascii", b"(J": "ascii", b"(H": "ascii", b"(I": "kana"}
_DOUBLE = {b"$B": "jis", b"$@": "jis", b"$(B": "jis", b"$(D": "jis0212", b"$(Q": "jis",
           b"$(O": "jis"}


def _fail(data: bytes, start: int, reason: str) -> UnicodeDecodeError:
    return UnicodeDecodeError(NAME, data, start, min(start + 1, len(data)), reason)


def _jis_to_sjis(first: int, second: int) -> tuple[int, int]:
    lead = ((first + 1) >> 1) + 0x70
    if lead >= 0xA0:
        lead += 0x40
    if not first & 1:
        return lead, second + 0x7E
    return lead, second + 0x1F + (1 if second >= 0x60 else 0)


def _run(data: bytes, start: int, end: int, mode: str) -> str:
    """Decode ``data[start:end]``, all in one character set."""
    chunk = data[start:end]
    if mode == "ascii":
        if not chunk.isascii():
            raise _fail(data, start, "8-bit byte in ISO-2022-JP text")
        return chunk.decode("ascii")
    if mode == "kana":
        if any(not 0x21 <= b <= 0x5F for b in chunk):
            raise _fail(data, start, "byte outside half-width katakana")
        return bytes(b + 0x80 for b in chunk).decode("cp932")
    if len(chunk) % 2:
        raise _fail(data, end - 1, "incomplete double-byte character")
    out = bytearray()
    for index in range(0, len(chunk), 2):
        first, second = chunk[index], chunk[index + 1]
        if not (0x21 <= first <= 0x7E and 0x21 <= second <= 0x7E):
            raise _fail(data, start + index, "byte outside JIS X 0208")
        if mode == "jis0212":
            out += bytes((0x8F, first | 0x80, second | 0x80))
        else:
            out += bytes(_jis_to_sjis(first, second))
    try:
        return out.decode("euc_jp" if mode == "jis0212" else "cp932")
    except UnicodeDecodeError as exc:
        raise _fail(data, start, "character not in cp932") from exc


def decode(data: bytes) -> str:
    """The text of ISO-2022-JP bytes with Microsoft's extensions (strict)."""
    pieces: list[str] = []
    mode = "ascii"
    shifted_from: str | None = None
    start = index = 0
    length = len(data)
    while index < length:
        byte = data[index]
        if byte not in (_ESC, _SO, _SI, 0x0A, 0x0D):
            index += 1
            continue
        pieces.append(_run(data, start, index, mode))
        if byte == _ESC:
            two, three = data[index + 1 : index + 3], data[index + 1 : index + 4]
            if two in _SINGLE:
                mode, index = _SINGLE[two], index + 3
            elif two in _DOUBLE:
                mode, index = _DOUBLE[two], index + 3
            elif three in _DOUBLE:
                mode, index = _DOUBLE[three], index + 4
            else:
                raise _fail(data, index, "unknown escape sequence")
        elif byte == _SO:
            shifted_from, mode, index = mode, "kana", index + 1
        elif byte == _SI:
            mode, shifted_from, index = shifted_from or "ascii", None, index + 1
        else:
            # A line end: RFC 1468 returns to ASCII before it; broken senders forget.
            pieces.append(chr(byte))
            mode, index = "ascii", index + 1
        start = index
    pieces.append(_run(data, start, length, mode))
    return "".join(pieces)
