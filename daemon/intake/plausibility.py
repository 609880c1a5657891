"""How much does a decoded text look like something a person wrote? A score to choose codecs.

Why this module exists: when bytes carry no (usable) charset label, several codecs decode them
without error, and the statistics of charset-normalizer are thin on a short subject or a file
name: ``转发：`` in GB2312 reads as Latin-1 ``×ª·¢£º`` or windows-1250, a GBK file name as
Korean. A person tells these apart at a glance: common hanzi in a row are text, a run of
currency signs and accented capitals is not. :func:`score` turns that glance into a number, so
:mod:`daemon.intake.charsets` can compare the candidate decodings of the *same* bytes.

Per character (ASCII counts zero: every candidate decodes it the same way):

* Han characters by how common they are: charset-normalizer's most frequent Chinese and
  Japanese characters score highest, then GB2312 level 1, Big5's common block and JIS level 1,
  then GB2312 level 2; anything rarer scores below zero.
* Hangul: the most frequent syllables, then KS X 1001; a syllable only in Microsoft's extension
  (what GBK read as cp949 produces) scores below zero, as does Han next to Hangul.
* Kana, CJK punctuation and full-width forms score as text.
* Letters outside ASCII (Latin, Cyrillic, Greek...) score as text inside a word of their own
  script and below zero alone, between letters of another script, as a capital after a
  small letter, or in a run of accented letters without an ASCII letter beside them.
* Symbols, controls, private-use, unassigned code points and U+FFFD score below zero.

Only the first :data:`SCORED_CHARS` characters are scored; the cost is linear and bounded.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from charset_normalizer.constant import FREQUENCIES

__all__ = ["SCORED_CHARS", "score"]

SCORED_CHARS = 20_000

_FREQUENT_HAN = frozenset("".join(FREQUENCIES.get("Chinese", [])) +
                          "".join(FREQUENCIES.get("Japanese", [])))
_FREQUENT_HANGUL = frozenset("".join(FREQUENCIES.get("Korean", [])))
# Symbols common in real Western text (currency, quotes, degrees, legal marks).
_COMMON_SYMBOLS = frozenset("«»°©®£€§¿¡·–—‘’‚“”„…•™±×")
_CJK_PUNCTUATION = frozenset("\u3000、。〃々〆〇〈〉《》「」『』【】〔〕〜・")
_HALF_COMMON_SYMBOLS = frozenset("¢¥µ¶¼½¾²³¹ªº")


def _encodes(ch: str, codec: str) -> bytes | None:
    try:
        return ch.encode(codec)
    except UnicodeEncodeError:
        return None


@lru_cache(maxsize=65_536)
def _han(ch: str) -> float:
    if ch in _FREQUENT_HAN:
        return 2.5
    gb = _encodes(ch, "gb2312")
    if gb is not None and 0xB0 <= gb[0] <= 0xD7:
        return 2.0
    big5 = _encodes(ch, "big5")
    if big5 is not None and 0xA4 <= big5[0] <= 0xC6:
        return 1.2
    sjis = _encodes(ch, "shift_jis")
    if sjis is not None and 0x88 <= sjis[0] <= 0x98:
        return 1.2
    if gb is not None:
        return 0.5
    return -2.0


@lru_cache(maxsize=65_536)
def _kanji(ch: str) -> float:
    """A Han character beside kana: Japanese, so JIS level 1 is what is common."""
    if ch in _FREQUENT_HAN:
        return 2.5
    sjis = _encodes(ch, "cp932")
    if sjis is not None and 0x88 <= sjis[0] <= 0x98:
        return 2.0
    return 0.5 if sjis is not None else -1.0


@lru_cache(maxsize=16_384)
def _hangul(ch: str) -> float:
    if ch in _FREQUENT_HANGUL:
        return 2.7
    encoded = _encodes(ch, "euc_kr")  # KS X 1001 proper: 2 bytes (not the 8-byte jamo form)
    return 2.2 if encoded is not None and len(encoded) == 2 else -2.0


def _script(ch: str) -> str:
    """A coarse script name for letters; "" for anything else."""
    code = ord(ch)
    if code < 0x80:
        return "latin" if ch.isalpha() else ""
    if not ch.isalpha():
        return ""
    if code < 0x250 or 0x1E00 <= code < 0x1F00:
        return "latin"
    if 0x370 <= code < 0x400:
        return "greek"
    if 0x400 <= code < 0x530:
        return "cyrillic"
    if 0x590 <= code < 0x600:
        return "hebrew"
    if 0x600 <= code < 0x700:
        return "arabic"
    if 0xE00 <= code < 0xE80:
        return "thai"
    if 0x3040 <= code < 0x3100 or 0xFF66 <= code < 0xFFA0:
        return "kana"
    if 0xAC00 <= code < 0xD7A4 or 0x1100 <= code < 0x1200 or 0x3130 <= code < 0x3190:
        return "hangul"
    if unicodedata.name(ch, "").startswith("CJK"):
        return "han"
    return "other"


def _cjk_char(ch: str, script: str) -> float | None:
    """The score of a CJK character, or None when ``ch`` is not one."""
    code = ord(ch)
    if script == "han":
        return _han(ch)
    if script == "han-ja":
        return _kanji(ch)
    if script == "hangul":
        return _hangul(ch) if 0xAC00 <= code < 0xD7A4 else -1.0
    if script == "kana":
        return -0.5 if code >= 0xFF61 else 2.0   # half-width katakana: rare in mail
    if ch in _CJK_PUNCTUATION or 0xFF01 <= code < 0xFF61:
        return 1.5                                 # CJK punctuation, full-width forms
    if 0x3000 <= code < 0x3040:
        return 0.5                                 # rarer CJK brackets and marks
    return None


def _letter(text: str, index: int, script: str) -> float:
    """A non-ASCII, non-CJK letter: text inside a word of its script, noise otherwise."""
    before = text[index - 1] if index > 0 else " "
    after = text[index + 1] if index + 1 < len(text) else " "
    before_script, after_script = _script(before), _script(after)
    value = 0.0
    if script in (before_script, after_script):
        value = 1.0
    elif not before_script and not after_script:
        value = -0.5
    for neighbour in (before_script, after_script):
        if neighbour and neighbour != script and "han" not in (neighbour, script):
            value -= 1.0
    if before.islower() and text[index].isupper() and before_script == script:
        value -= 1.5  # "aÄ": a capital inside a word
    if script == "latin" and not before.isascii() and not after.isascii() \
            and before.isalpha() and after.isalpha():
        value -= 1.5  # "ÑÇÖ": accented letters with no plain letter beside them
    return value


def _glued(text: str, index: int) -> float:
    """Penalty for a CJK character glued to small ASCII letters ("L黷kebohle", "愜oogle"):
    words such as "OA系统" or "Win10" touch capitals and digits, rarely a small letter."""
    penalty = 0.0
    if index > 0 and text[index - 1].isascii() and text[index - 1].islower():
        penalty += 1.5
    if index + 1 < len(text) and text[index + 1].isascii() and text[index + 1].islower():
        penalty += 1.5
    return penalty


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x2E80 <= code < 0xA000 or 0xAC00 <= code < 0xD7A4 or 0xF900 <= code < 0xFB00 \
        or 0xFF00 <= code < 0xFFF0 or 0x20000 <= code < 0x30000


def _alone(text: str, index: int) -> bool:
    """A CJK character with none beside it: one such character in Western text is noise."""
    before = index > 0 and _is_cjk(text[index - 1])
    after = index + 1 < len(text) and _is_cjk(text[index + 1])
    return not before and not after


def score(text: str) -> float:
    """Higher is more plausible; compare only decodings of the same bytes."""
    total = 0.0
    sample = text[:SCORED_CHARS]
    previous_script = ""
    for index, ch in enumerate(sample):
        code = ord(ch)
        if code < 0x80:
            if code < 0x20 and ch not in "\t\n\r":
                total -= 3.0
            previous_script = "latin" if ch.isalpha() else ""
            continue
        if ch == "\ufffd":
            total -= 8.0
            previous_script = ""
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Co", "Cn", "Cs"):
            total -= 5.0
            previous_script = ""
            continue
        script = _script(ch)
        kana_beside = previous_script == "kana" or (
            index + 1 < len(sample) and _script(sample[index + 1]) == "kana")
        cjk = _cjk_char(ch, "han-ja" if script == "han" and kana_beside else script)
        if cjk is not None:
            total += cjk
            mixed = {previous_script, script}
            if mixed == {"han", "hangul"}:
                total -= 1.5
            if script in ("han", "hangul", "kana"):
                total -= _glued(sample, index)
            if ((script == "han" and ch not in _FREQUENT_HAN) or code >= 0xFF61) \
                    and _alone(sample, index):
                total -= 1.0  # a lone rare ideograph or half-width kana in Western text
            if script == "han" and previous_script != "han" and index > 0 \
                    and sample[index - 1] == " ":
                total -= 1.0  # Chinese does not put spaces between words; Korean does
            previous_script = script
            continue
        if script:
            total += _letter(sample, index, script)
        elif category.startswith("Z") or category == "Mn":
            pass
        elif ch in _COMMON_SYMBOLS:
            total -= 0.2
        elif ch in _HALF_COMMON_SYMBOLS:
            total -= 0.7
        else:
            total -= 1.0
        previous_script = script
    return total
