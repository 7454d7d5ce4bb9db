"""Figure: one page of 500 nodes filtered by cluster and state, at 12,500 nodes, measured in-process on the API
(real app, auth and JSON included). Target: p50 under 30 ms."""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from _api import percentile, timed_reads
from _fleet import FleetShape

URL = "/api/v1/nodes?cluster=cluster-0&state=in_service&limit=500"
TARGET_MS = 30


def _check(answer: Any, _shape: FleetShape) -> None:
    items = answer["items"]
    assert len(items) == 500 and all(n["cluster"] == "cluster-0" and n["state"] == "in_service" for n in items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    shape, timings = timed_reads(args.db, URL, args.requests, 20, _check)
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
