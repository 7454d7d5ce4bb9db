"""The JSON responses routes answer with: written by orjson where speed counts, else as FastAPI writes values.

A 500-node page spent about a sixth of its time in the standard library's encoder and another tenth turning its
times into text first; orjson writes the same compact UTF-8, times included (RFC 3339, as ``isoformat`` writes
them), several times faster. What orjson refuses (an integer beyond 64 bits, a key that is not a string) is written
by the standard encoder, so no answer that worked turns into an error.

Routes return these objects themselves, so FastAPI skips validating the answer against the route's declared
``response_model``, which then only describes it in the OpenAPI document.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson
import pydantic_core
from fastapi.responses import JSONResponse as _StandardJSONResponse


def _time(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class JSONResponse(_StandardJSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:  # orjson.JSONEncodeError
            text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_time)
            return text.encode("utf-8")


class ValueJSONResponse(JSONResponse):
    """JSON written by pydantic-core, as FastAPI wrote a route's plain return value before the route declared its
    model: the same bytes (times with ``Z``, what JSON lacks written as pydantic writes it), with no validation.

    Routes declare ``response_model`` for the OpenAPI document and return one of these (or a ``JSONResponse`` where
    speed counts), so FastAPI neither validates nor re-serialises what they answer.
    """

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)
