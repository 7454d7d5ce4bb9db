"""Figure: one page of 500 nodes filtered by cluster and state, at 12,500 nodes, measured in-process on the API
(real app, auth and JSON included). Target: p50 under 30 ms."""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

from _db import scratch_database
from _fleet import ACTOR, populate
from gpufleet.api.app import create_app
from gpufleet.services.tokens import create_token

URL = "/api/v1/nodes?cluster=cluster-0&state=in_service&limit=500"
TARGET_MS = 30


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=200)
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
            items = first.json()["items"]
            assert len(items) == 500 and all(n["cluster"] == "cluster-0" and n["state"] == "in_service" for n in items)
            for _ in range(20):
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
                "figure": "list_nodes_page",
                "db": args.db,
                "nodes": shape.nodes,
                "gpus": shape.gpus,
                "page": 500,
                "requests": args.requests,
                "p50_ms": round(p50, 2),
                "p95_ms": round(percentile(timings, 0.95), 2),
                "target_p50_ms": TARGET_MS,
                "met": p50 < TARGET_MS,
            }
        )
    )


if __name__ == "__main__":
    main()
