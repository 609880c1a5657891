"""Confirmation and rating in a requester's answer to a resolution."""

from __future__ import annotations

import pytest

from daemon.feedback import is_confirmation, rating


@pytest.mark.parametrize("text", [
    "已解决", "已解决，谢谢！", "谢谢，已解决", "确认", "好了，谢谢", "Solved, thanks!",
    "resolved, thanks", "Confirmed.", "It works now, thank you", "已解决 满意度：5",
    "已解决\n\n王芳\n财务部",
])
def test_confirmations(text: str) -> None:
    assert is_confirmation(text)


@pytest.mark.parametrize("text", [
    "还是没解决", "没有解决，登录还是转圈", "不行，仍然报错", "Not solved, it still fails",
    "It happened again this afternoon", "", "满意度：5",
    "已解决了一半，但是导出功能还有另外一个问题，需要你们再帮忙看一下，谢谢",
])
def test_not_confirmations(text: str) -> None:
    assert not is_confirmation(text)


@pytest.mark.parametrize(("text", "value"), [
    ("满意度：5", 5), ("满意度: 4", 4), ("评分 3", 3), ("给 5 分", 5), ("4/5", 4),
    ("rating: 2", 2), ("Score 1", 1), ("非常满意", 5), ("满意", 4), ("一般", 3),
    ("不满意", 2), ("非常不满意", 1), ("已解决，谢谢", None), ("电话 13850212345", None),
    ("rating: 7", None),
])
def test_ratings(text: str, value: int | None) -> None:
    assert rating(text) == value
