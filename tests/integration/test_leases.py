"""Leases on both databases: take, renew, refuse another holder, take over after expiry."""

from __future__ import annotations

import threading
from datetime import timedelta

from daemon import leases
from daemon.app import App
from daemon.clock import FixedClock


def test_acquire_renew_refuse_and_take_over_after_expiry(app: App, clock: FixedClock) -> None:
    assert leases.acquire(app, "mailbox:a", "host:1:aa", 60)
    info = leases.current(app, "mailbox:a")
    assert info is not None and info.holder == "host:1:aa"
    assert info.expires_at == clock.now() + timedelta(seconds=60)

    clock.advance(timedelta(seconds=30))
    assert leases.acquire(app, "mailbox:a", "host:1:aa", 60)  # the holder renews
    renewed = leases.current(app, "mailbox:a")
    assert renewed is not None and renewed.expires_at == clock.now() + timedelta(seconds=60)

    assert not leases.acquire(app, "mailbox:a", "host:2:bb", 60)  # another is refused
    clock.advance(timedelta(seconds=59))
    assert not leases.acquire(app, "mailbox:a", "host:2:bb", 60)  # still 1 s left
    still = leases.current(app, "mailbox:a")
    assert still is not None and still.holder == "host:1:aa"

    clock.advance(timedelta(seconds=2))  # expired: the dead holder's lease passes on
    assert leases.acquire(app, "mailbox:a", "host:2:bb", 60)
    taken = leases.current(app, "mailbox:a")
    assert taken is not None and taken.holder == "host:2:bb"
    assert not leases.acquire(app, "mailbox:a", "host:1:aa", 60)  # the old one is out


def test_leases_are_independent_and_release_frees_at_once(app: App) -> None:
    assert leases.acquire(app, "mailbox:a", "one", 60)
    assert leases.acquire(app, "mailbox:b", "two", 60)
    assert not leases.release(app, "mailbox:a", "two")  # only the holder releases
    assert leases.release(app, "mailbox:a", "one")
    assert leases.current(app, "mailbox:a") is None
    assert leases.acquire(app, "mailbox:a", "two", 60)
    assert set(leases.all_leases(app)) == {"mailbox:a", "mailbox:b"}


def test_racing_instances_get_exactly_one_holder(app: App) -> None:
    winners: list[str] = []
    start = threading.Barrier(6)

    def contend(me: str) -> None:
        start.wait()
        if leases.acquire(app, "mailbox:race", me, 60):
            winners.append(me)

    threads = [threading.Thread(target=contend, args=(f"host:{n}:x",)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    info = leases.current(app, "mailbox:race")
    assert info is not None and info.holder == winners[0]


def test_keeper_renews_only_when_a_third_has_passed(app: App, clock: FixedClock) -> None:
    keeper = leases.Keeper(app, "mailbox:k", "me", 90)
    other = leases.Keeper(app, "mailbox:k", "other", 90)
    assert keeper.hold() and keeper.held
    first = leases.current(app, "mailbox:k")
    assert first is not None
    clock.advance(timedelta(seconds=20))
    assert keeper.hold()  # not due: no database write
    same = leases.current(app, "mailbox:k")
    assert same is not None and same.expires_at == first.expires_at
    clock.advance(timedelta(seconds=11))
    assert keeper.hold()  # due (> 30 s): renewed
    later = leases.current(app, "mailbox:k")
    assert later is not None and later.expires_at == clock.now() + timedelta(seconds=90)
    assert not other.hold()
    keeper.release()
    assert (keeper.held, other.hold()) == (False, True)
    clock.advance(timedelta(seconds=200))  # other died without renewing
    assert not other.held
    assert keeper.hold()
