"""What a requester's answer to a resolution says: confirmed or not, and a 1-5 rating.

Pure functions over the reply's new text (quoted history already removed). A confirmation is a
short answer that says it is solved and does not also say something is still wrong: "已解决，
谢谢" closes the ticket, "还是没解决" or a long description reopens it for the handler.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

DEFAULT_CONFIRMATIONS = (
    "已解决", "解决了", "确认", "确认解决", "谢谢，已解决", "已经好了", "好了", "可以了",
    "没问题了", "已恢复", "solved", "resolved", "resolved, thanks", "confirmed", "fixed",
    "it works", "works now", "all good", "thanks, solved",
)

# Words that turn "solved" into "not solved", or add a "but".
_NEGATIONS = ("没", "未", "不", "仍", "还是", "依然", "依旧", "但", "可是", "不过", "另外",
              "not ", "n't", "still", "again", "no longer", "but ", "however")
_MAX_CONFIRMATION = 32   # characters (after removing the rating): longer is a description

_RATING_NUMBER = re.compile(
    r"(?:满意度|评分|评价|打分|rating|score|satisfaction)\s*[:：=]?\s*([1-5])(?![0-9])"
    r"|(?<![0-9])([1-5])\s*(?:分|星|/\s*5|out of 5)(?![0-9])", re.IGNORECASE)
_RATING_WORDS = (("非常不满意", 1), ("很不满意", 1), ("不满意", 2), ("一般", 3),
                 ("非常满意", 5), ("很满意", 5), ("满意", 4))


def rating(text: str) -> int | None:
    """The 1-5 rating a reply gives ("满意度: 5", "评分 4", "4/5", "rating: 4", "满意"), if any."""
    head = text.strip()[:500]
    match = _RATING_NUMBER.search(head)
    if match:
        return int(match.group(1) or match.group(2))
    plain = head.replace("满意度", "")
    for word, value in _RATING_WORDS:
        if word in plain:
            return value
    return None


def _normal(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\s\W_]+", " ", text).strip()


def is_confirmation(text: str, phrases: Iterable[str] = DEFAULT_CONFIRMATIONS) -> bool:
    """True when the reply's first paragraph confirms the resolution and says nothing else."""
    first = text.strip().split("\n\n", 1)[0]
    first = _RATING_NUMBER.sub(" ", first)
    for word, _ in _RATING_WORDS:
        first = first.replace(word, " ")
    plain = unicodedata.normalize("NFKC", first).lower().strip()
    if not plain or len(plain) > _MAX_CONFIRMATION:
        return False
    if any(n in plain for n in _NEGATIONS):
        return False
    normal = _normal(plain)
    return any(_normal(p) and _normal(p) in normal for p in phrases)
