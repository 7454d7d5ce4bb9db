"""Figure: the fleet summary (nodes and GPUs by state x cluster x supplier x SKU) at 12,500 nodes, measured
in-process on the API. Target: under 100 ms."""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

from _db import scratch_database
from _fleet import ACTOR, populate
from bench_list_nodes import percentile
from gpufleet.api.app import create_app
from gpufleet.services.tokens import create_token

URL = "/api/v1/summary"
TARGET_MS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2")
        from fastapi.testclient import TestClient
    with scratch_database(args.db) as db:
        shape = populate(db)
        token = create_token(db, "bench", "viewer", ACTOR).secret
        with TestClient(create_app(db)) as client:
            headers = {"Authorization": f"Bearer {token}"}
            first = client.get(URL, headers=headers)
            assert first.status_code == 200, first.text
            assert first.json()["nodes"] == shape.nodes and first.json()["gpus"] == shape.gpus
            for _ in range(10):
                client.get(URL, headers=headers)
            timings = []
            for _ in range(args.requests):
                start = time.perf_counter()
                response = client.get(URL, headers=headers)
                timings.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200
    p50 = statistics.median(timings)
    print(
        json.dumps(
            {
                "figure": "fleet_summary",
                "db": args.db,
                "nodes": shape.nodes,
                "gpus": shape.gpus,
                "requests": args.requests,
                "p50_ms": round(p50, 2),
                "p95_ms": round(percentile(timings, 0.95), 2),
                "target_ms": TARGET_MS,
                "met": percentile(timings, 0.95) < TARGET_MS,
            }
        )
    )


if __name__ == "__main__":
    main()
