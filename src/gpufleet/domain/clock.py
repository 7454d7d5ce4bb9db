"""What tells the time: declared once, at the bottom, so the domain, the drivers and every capability take the same
clock (the system's in production, the simulator's or a test's manual one elsewhere) and never read time themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...
