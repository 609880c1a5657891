"""``fields.find_system`` (one precompiled regex per tuple of systems) names the same system
with the same words as asking each word's own regex and ranking the matches, which is what it
did before: earliest mention, then the longer word, then the system's name."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.classify import BUILTIN_SYSTEMS
from daemon.fields import System, find_system, word_pattern

SYSTEMS = (*BUILTIN_SYSTEMS, System("OA审批", ("oa审批流",)), System("Mail", ("OA",)),
           System("K3 Cloud", ("k3",)))
WORDS = sorted({w for s in SYSTEMS for w in s.words()})


def each_word(text: str, systems: tuple[System, ...]) -> tuple[str, str] | None:
    """The reference: one search per word, the best rank wins."""
    best: tuple[int, int, str, str] | None = None
    for system in systems:
        for word in system.words():
            if match := re.search(word_pattern(word), text, re.IGNORECASE):
                rank = (match.start(), -len(word), system.name, match.group(0))
                if best is None or rank < best:
                    best = rank
    return (best[2], best[3]) if best else None


pieces = st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS).map(str.lower),
                   st.sampled_from(["", " ", "-", "的", "x", "1", "系统", "登录不了", "\n"]),
                   st.text(max_size=5))


@settings(max_examples=400, deadline=None)
@given(st.lists(pieces, max_size=8).map("".join))
def test_same_answer_as_one_search_per_word(text: str) -> None:
    assert find_system(text, SYSTEMS) == each_word(text, SYSTEMS)
    assert find_system(text, BUILTIN_SYSTEMS) == each_word(text, BUILTIN_SYSTEMS)


def test_examples() -> None:
    assert find_system("OA审批流卡住了", SYSTEMS) == ("OA审批", "OA审批流")
    assert find_system("the oa is down", SYSTEMS) == ("Mail", "oa")
    assert find_system("nothing here", SYSTEMS) is None
    assert find_system("anything", ()) is None
