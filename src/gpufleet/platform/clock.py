"""Time as a dependency: production reads the system clock, tests and the simulator move time themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpufleet.domain.clock import Clock as Clock  # the one declaration; platform hands out its two kinds


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to, so time-driven behaviour is tested instantly and repeatably."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = when
