"""Figure: re-ban rates and the full threshold table over 1,000,000 validation pass records (target: both together
under 2 s, on SQLite and on PostgreSQL).

The history: 12,500 nodes (3 suppliers, 2 SKUs, 4 clusters), each with a run of slow-path attempts of 12 passes
(some failing first at a random pass) and fast-track attempts of one pass, until there are a million pass records;
30%, 5% or 1% of admissions (by supplier) are followed by a ban, most within 30 days. It is loaded with bulk
inserts (COPY on PostgreSQL); only the analytics are timed, through the same service calls the CLI and API make.
"""

from __future__ import annotations

import io
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from _db import backend_arg, scratch_database
from gpufleet.adapters.db.models import Cluster, NodeBan, ValidationAttempt, ValidationResult
from gpufleet.fleet.inventory import chassis_id, import_nodes
from gpufleet.fleet.reference import FleetDocument, import_fleet
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.validation.analytics import reban_report, threshold_report

RECORDS = 1_000_000
NODES = 12_500
PASSES = 12
TARGET_SECONDS = 2.0
ACTOR = Actor(name="bench", role=Role.ADMIN)
START = datetime(2025, 1, 1, tzinfo=UTC)
FLEET = {
    "suppliers": [{"name": f"supplier-{i}", "kind": "cloud"} for i in range(3)],
    "clusters": [
        {"name": f"cluster-{i}", "supplier": f"supplier-{i % 3}", "kind": "slurm", "role": "frontier"} for i in range(4)
    ],
    "skus": [
        {"name": "H100-SXM-80GB", "gpu_vendor": "nvidia", "gpu_model": "H100", "gpus_per_node": 8, "gpu_memory_gb": 80},
        {"name": "GB300-NVL72", "gpu_vendor": "nvidia", "gpu_model": "GB300", "gpus_per_node": 4, "gpu_memory_gb": 288},
    ],
}
SEQUENCE = "validation_attempts_id_seq"
SUPPLIER_FAILURE = [0.30, 0.10, 0.01]
"""Chance a slow-path attempt fails somewhere, per supplier."""
SUPPLIER_BANS = [0.30, 0.05, 0.01]
"""Chance an admitted node is banned again, per supplier: the spread operators see (30% at one, 1% at another)."""


Nodes = list[tuple[str, int, int, int]]


def seed_nodes(db: Database) -> Nodes:
    """(chassis id, cluster id, GPUs, supplier number) per node."""
    import_fleet(db, FleetDocument.model_validate(FLEET), ACTOR)
    with db.reader() as session:
        cluster_ids = dict(session.execute(select(Cluster.name, Cluster.id)).all())
    lines = ["supplier,serial,hostname,sku,cluster,state"]
    nodes = []
    for i in range(NODES):
        cluster = i % 4
        sku, gpus = ("GB300-NVL72", 4) if i % 5 == 0 else ("H100-SXM-80GB", 8)
        lines.append(f"supplier-{cluster % 3},V{i:06d},v-{i:06d},{sku},cluster-{cluster},in_service")
        nodes.append(
            (chassis_id(f"supplier-{cluster % 3}", f"V{i:06d}"), cluster_ids[f"cluster-{cluster}"], gpus, cluster % 3)
        )
    report = import_nodes(db, "\n".join(lines) + "\n", "bench.csv", ACTOR)
    assert report.applied, report.summary_line()
    return nodes


def history(nodes: Nodes) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]], list[dict[str, Any]]]:
    """Attempts, pass records (as tuples) and bans, generated deterministically."""
    rng = random.Random(6)
    attempts: list[dict[str, Any]] = []
    results: list[tuple[Any, ...]] = []
    bans: list[dict[str, Any]] = []
    clock = {node[0]: START + timedelta(hours=rng.random() * 24 * 30) for node in nodes}
    counters = dict.fromkeys(clock, 0)
    index = 0
    while len(results) < RECORDS:
        node, cluster, gpus, supplier = nodes[index % NODES]
        index += 1
        counters[node] += 1
        fast = rng.random() < 0.2
        passes = 1 if fast else PASSES
        fails = rng.random() < (0.02 if fast else SUPPLIER_FAILURE[supplier] + (0.1 if gpus == 4 else 0))
        first_fail = rng.randint(1, passes) if fails else None
        ran = first_fail or passes
        ran = min(ran, RECORDS - len(results))
        attempt_id = len(attempts) + 1
        began = clock[node]
        at = began
        for p in range(1, ran + 1):
            minutes = 2 if fast else rng.uniform(55, 65)
            end = at + timedelta(minutes=minutes)
            result = "fail" if p == first_fail else "pass"
            results.append((attempt_id, p, at, end, minutes * 60, result, result, "{}", "[]", "bench"))
            at = end
        status = "failed" if first_fail and first_fail <= ran else ("passed" if ran == passes else "in_progress")
        attempts.append(
            {
                "id": attempt_id,
                "node_id": node,
                "attempt": counters[node],
                "cluster_id": cluster,
                "path": "fast_track" if fast else "slow_path",
                "suite": "quick" if fast else "full",
                "passes_required": passes,
                "config_version": None,
                "gpus": gpus,
                "status": status,
                "passes_recorded": ran,
                "first_failed_pass": first_fail if status == "failed" else None,
                "started_at": began,
                "finished_at": at,
                "created_at": at,
            }
        )
        if status == "passed" and rng.random() < SUPPLIER_BANS[supplier]:
            bans.append(
                {
                    "node_id": node,
                    "cluster_id": cluster,
                    "at": at + timedelta(days=rng.uniform(0.5, 40)),
                    "reason": "bench",
                    "source": "bench",
                    "actor": "bench",
                    "correlation_id": "bench",
                    "created_at": at,
                }
            )
        clock[node] = at + timedelta(days=rng.uniform(1, 10))
    return attempts, results, bans


RESULT_COLUMNS = (
    "attempt_id",
    "pass_number",
    "started_at",
    "finished_at",
    "seconds",
    "result",
    "reported_result",
    "checks",
    "failures",
    "source",
)


def load(
    db: Database, attempts: list[dict[str, Any]], results: list[tuple[Any, ...]], bans: list[dict[str, Any]]
) -> None:
    with db.transaction() as session:
        session.execute(insert(ValidationAttempt), attempts)
        session.execute(insert(NodeBan), bans)
        if db.dialect != "postgresql":
            rows = [dict(zip(RESULT_COLUMNS, r, strict=True)) for r in results]
            for start in range(0, len(rows), 100_000):
                session.execute(insert(ValidationResult), rows[start : start + 100_000])
        else:
            _copy_results(session, results)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def _copy_results(session: Session, results: list[tuple[Any, ...]]) -> None:
    """PostgreSQL's COPY: the fast way to load a million rows, then the attempt ids' sequence moved past them."""
    raw = session.connection().connection.driver_connection
    with raw.cursor().copy(f"COPY validation_results ({', '.join(RESULT_COLUMNS)}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for r in results:
            buffer.write("\t".join(v.isoformat() if isinstance(v, datetime) else str(v) for v in r) + "\n")
            if buffer.tell() > 8 << 20:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    session.execute(text(f"SELECT setval('{SEQUENCE}', (SELECT max(id) FROM validation_attempts))"))


def timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def main() -> None:
    args = backend_arg(__doc__ or "")
    with scratch_database(args.db) as db:
        nodes = seed_nodes(db)
        attempts, results, bans = history(nodes)
        load_s, _ = timed(lambda: load(db, attempts, results, bans))
        runs = []
        for _ in range(3):
            reban_s, rates = timed(lambda: reban_report(db, ACTOR, "supplier"))
            threshold_s, table = timed(lambda: threshold_report(db, ACTOR))
            runs.append((reban_s, threshold_s, reban_s + threshold_s))
    first = runs[0]
    median = [statistics.median(r[i] for r in runs) for i in range(3)]
    print(
        json.dumps(
            {
                "figure": "validation_analytics",
                "db": args.db,
                "records": len(results),
                "attempts": len(attempts),
                "bans": len(bans),
                "load_seconds": round(load_s, 1),
                "reban_rates_seconds": round(median[0], 3),
                "threshold_table_seconds": round(median[1], 3),
                "both_seconds": round(median[2], 3),
                "both_seconds_first_run": round(first[2], 3),
                "target_seconds": TARGET_SECONDS,
                "met": median[2] < TARGET_SECONDS,
                "reban_rate_by_supplier": {r.group: round(r.rate, 4) for r in rates.rates},
                "threshold_k1": table.rows[0].as_dict() if table.rows else None,
            }
        )
    )


if __name__ == "__main__":
    main()
