"""Timing one API read in-process (the real app, auth and JSON included) on the fleet the figures are quoted at."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from _db import scratch_database
from _fleet import ACTOR, FleetShape, populate
from gpufleet.api.app import create_app
from gpufleet.fleet.tokens import create_token


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_reads(
    backend: str, url: str, requests: int, warmup: int, check: Callable[[Any, FleetShape], None]
) -> tuple[FleetShape, list[float]]:
    """Milliseconds per GET of ``url`` with a viewer token, after ``check`` accepted the first answer's JSON and
    ``warmup`` untimed reads; a figure over a wrong answer would be no figure."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2")
        from fastapi.testclient import TestClient
    with scratch_database(backend) as db:
        shape = populate(db)
        token = create_token(db, "bench", "viewer", ACTOR).secret
        with TestClient(create_app(db)) as client:
            headers = {"Authorization": f"Bearer {token}"}
            first = client.get(url, headers=headers)
            assert first.status_code == 200, first.text
            check(first.json(), shape)
            for _ in range(warmup):
                client.get(url, headers=headers)
            timings = []
            for _ in range(requests):
                start = time.perf_counter()
                response = client.get(url, headers=headers)
                timings.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200
    return shape, timings
