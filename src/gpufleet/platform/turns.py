"""Turns handed out in arrival order, for work that must not run more than a few at a time in one process."""

from __future__ import annotations

import threading
from collections import deque


class FairTurns:
    """At most ``size`` holders at once; the others wait in the order they came.

    ``threading.Semaphore`` lets a thread that just gave a turn back take it again before the waiter it woke runs, so
    under a steady burst some waiters starve for seconds. Here a released turn goes straight to the oldest waiter.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("at least one turn")
        self.size = size
        self._free = size
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a turn; False if none came."""
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=timeout):
            return True
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return True  # handed a turn just as the wait ran out: it is this caller's
            return False

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1

    @property
    def waiting(self) -> int:
        return len(self._waiters)
