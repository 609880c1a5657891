"""``classify._hits`` (a substring test first, the regex over the words left) finds the same
words in the same order as one case-insensitive alternation of all of a category's keywords,
which is what it did before; and so the classification of a text is unchanged."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.classify import Reader, _builtin_categories, _hits
from daemon.fields import word_pattern

CATEGORIES = _builtin_categories()
WORDS = sorted({w for c in CATEGORIES for w in c.keywords})


def whole_alternation(words: tuple[str, ...], text: str) -> list[str]:
    """The reference: every keyword in one IGNORECASE alternation, longest first."""
    ordered = sorted({w.lower() for w in words if w.strip()}, key=len, reverse=True)
    if not ordered or not text:
        return []
    matcher = re.compile("|".join(f"(?:{word_pattern(w)})" for w in ordered), re.IGNORECASE)
    found: list[str] = []
    for match in matcher.finditer(text):
        word = match.group(0).lower()
        if word not in found:
            found.append(word)
    return found


pieces = st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS).map(str.upper),
                   st.sampled_from(WORDS).map(str.title),
                   st.sampled_from(["", " ", "-", "_", "的", "x", "1", "系统", "\n", "P1"]),
                   st.text(alphabet=st.characters(codec="utf-8"), max_size=4))


@settings(max_examples=500, deadline=None)
@given(st.lists(pieces, max_size=10).map("".join))
def test_the_same_words_in_the_same_order(text: str) -> None:
    for category in CATEGORIES:
        assert _hits(category.keywords, text) == whole_alternation(category.keywords, text)


def test_a_mail_is_classified_as_before() -> None:
    reader = Reader(CATEGORIES)
    found = reader.classify("VPN 连不上，无法访问内网 [紧急]",
                            "从早上开始 VPN 一直连接不上，报错 timeout。\n影响全组。")
    assert found.category == "系统故障" and found.team == "ops"
    assert "连不上" in found.why or "无法访问" in found.why
