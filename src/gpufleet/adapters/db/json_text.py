"""JSON text for the database's JSON columns and the bulk statements that carry rows as JSON.

orjson writes a health event's evidence several times faster than the standard library, which under a burst of
telemetry is most of the cost of encoding a row. What orjson refuses (an integer beyond 64 bits in a user's JSON
event) and what it cannot read (``NaN`` written by an older release) fall back to the standard library, so no value
the column accepted before is turned away now.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson


def _time(value: object) -> str:
    """Times as orjson writes them (RFC 3339), so the fallback's text reads the same."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: an int beyond 64 bits, a non-string key
        return json.dumps(value, default=_time)


def from_json(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
