"""Turns in arrival order: the admission limit health ingest waits on."""

from __future__ import annotations

import threading
import time

import pytest

from gpufleet.platform.turns import FairTurns


def test_a_released_turn_goes_to_the_oldest_waiter_not_to_whoever_asks_next() -> None:
    turns = FairTurns(1)
    assert turns.acquire(timeout=1)
    order: list[int] = []
    threads = []
    for i in range(4):
        thread = threading.Thread(target=lambda i=i: (turns.acquire(timeout=5), order.append(i), turns.release()))
        thread.start()
        threads.append(thread)
        while turns.waiting < i + 1:  # each is queued before the next one starts
            time.sleep(0.001)
    turns.release()
    assert turns.acquire(timeout=5)  # asks after the four: served after them
    order.append(99)
    turns.release()
    for thread in threads:
        thread.join(timeout=5)
    assert order == [0, 1, 2, 3, 99]


def test_a_wait_that_runs_out_gets_no_turn_and_leaves_the_queue() -> None:
    turns = FairTurns(2)
    assert turns.acquire(timeout=1) and turns.acquire(timeout=1)
    started = time.monotonic()
    assert not turns.acquire(timeout=0.05)
    assert time.monotonic() - started >= 0.05 and turns.waiting == 0
    turns.release()
    assert turns.acquire(timeout=0)  # the freed turn was not handed to the waiter that gave up


def test_at_least_one_turn() -> None:
    with pytest.raises(ValueError, match="at least one turn"):
        FairTurns(0)
