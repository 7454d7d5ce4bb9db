"""The API's JSON response: orjson's bytes, and the standard encoder for what orjson refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from gpufleet.api.responses import JSONResponse


def test_times_are_written_as_isoformat_writes_them() -> None:
    times = [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 289889, tzinfo=timezone(timedelta(hours=2))),
    ]
    body = JSONResponse({"at": times, "name": "gpu-ü"}).body
    assert json.loads(body) == {"at": [t.isoformat() for t in times], "name": "gpu-ü"}
    assert b" " not in body and "ü".encode() in body  # compact UTF-8, as the standard response writes


def test_what_orjson_refuses_is_written_by_the_standard_encoder() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    content = {"attributes": {"asset_tag": 2**70}, "counts": {1: "a"}, "at": at}
    assert json.loads(JSONResponse(content).body) == {
        "attributes": {"asset_tag": 2**70},
        "counts": {"1": "a"},
        "at": at.isoformat(),
    }
