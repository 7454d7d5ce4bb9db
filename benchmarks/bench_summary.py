"""Figure: the fleet summary (nodes and GPUs by state x cluster x supplier x SKU) at 12,500 nodes, measured
in-process on the API. Target: under 100 ms."""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from _api import percentile, timed_reads
from _fleet import FleetShape

URL = "/api/v1/summary"
TARGET_MS = 100


def _check(answer: Any, shape: FleetShape) -> None:
    assert answer["nodes"] == shape.nodes and answer["gpus"] == shape.gpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    shape, timings = timed_reads(args.db, URL, args.requests, 10, _check)
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
