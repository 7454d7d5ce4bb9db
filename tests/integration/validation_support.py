"""A small fleet for validation tests, and result records built the way a driver writes them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from gpufleet.fleet.inventory import chassis_id, import_nodes
from gpufleet.platform.database import Database
from tests.conftest import START
from tests.factories import OPERATOR, seed_reference

HEADER = "supplier,serial,hostname,sku,cluster,state\n"
# E1..E8: H100 (8 GPUs) in east-frontier from acme-cloud. W1..W3: GB300 (4 GPUs) in west-fleet from bolt-hw.
EAST = [f"E{i}" for i in range(1, 9)]
WEST = [f"W{i}" for i in range(1, 4)]
HISTORY_START = START - timedelta(days=200)


def seed_fleet(db: Database, state: str = "validating") -> None:
    seed_reference(db)
    rows = [f"acme-cloud,{s},host-{s.lower()},H100-SXM-80GB,east-frontier,{state}" for s in EAST]
    rows += [f"bolt-hw,{s},host-{s.lower()},GB300-NVL72,west-fleet,{state}" for s in WEST]
    report = import_nodes(db, HEADER + "\n".join(rows) + "\n", "nodes.csv", OPERATOR)
    assert report.ok and report.applied, report.as_dict()


def node_id(serial: str) -> str:
    return chassis_id("acme-cloud" if serial.startswith("E") else "bolt-hw", serial)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def record(
    node: str,
    attempt: int,
    pass_number: int,
    result: str = "pass",
    start: datetime = HISTORY_START,
    hours: float = 1.0,
    cluster: str | None = None,
    suite: str = "full",
    **extra: Any,
) -> dict[str, Any]:
    """Pass ``pass_number`` of an attempt starting at ``start``; each pass takes ``hours`` and follows the last."""
    began = start + timedelta(hours=hours * (pass_number - 1))
    return {
        "node": node,
        "cluster": cluster or ("east-frontier" if node.upper().startswith(("E", "HOST-E")) else "west-fleet"),
        "attempt": attempt,
        "pass_number": pass_number,
        "suite": suite,
        "started_at": iso(began),
        "finished_at": iso(began + timedelta(hours=hours)),
        "result": result,
        "checks": {"dcgm_r3": result},
        **extra,
    }


def attempt_records(
    node: str, attempt: int, passes: int, first_fail: int | None = None, start: datetime = HISTORY_START, **kw: Any
) -> list[dict[str, Any]]:
    """A whole attempt: passes 1..N, or 1..j when pass j fails (a failing pass ends it)."""
    last = first_fail or passes
    return [
        record(node, attempt, p, "fail" if p == first_fail else "pass", start, passes_required=passes, **kw)
        for p in range(1, last + 1)
    ]


def jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)
