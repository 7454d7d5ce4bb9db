"""Figure: single lifecycle transitions (each with its event, in its own transaction) against a bare single-row
UPDATE transaction on the same database in the same run, in interleaved blocks of 400. Target: at least 70% of the
bare rate."""

from __future__ import annotations

import json
import statistics
import time

from sqlalchemy import bindparam, select, update

from _db import backend_arg, scratch_database
from bench_import import ACTOR, FLEET
from gpufleet.adapters.db.models import Node, UTCDateTime
from gpufleet.fleet.inventory import import_nodes
from gpufleet.fleet.lifecycle import transition
from gpufleet.fleet.reference import FleetDocument, import_fleet

NODES = 2_000
ROUNDS = 4_000
BLOCK = 400
WARMUP = NODES  # a whole quarantine cycle, so the measured blocks start from in_service again


def main() -> None:
    args = backend_arg(__doc__ or "")
    rows = ["supplier,serial,hostname,sku,cluster,state"]
    rows += [f"supplier-0,T{i:05d},t-{i:05d},H100-SXM-80GB,cluster-0,in_service" for i in range(NODES)]
    with scratch_database(args.db) as db:
        import_fleet(db, FleetDocument.model_validate(FLEET), ACTOR)
        report = import_nodes(db, "\n".join(rows) + "\n", "bench.csv", ACTOR)
        with db.reader() as session:
            ids = sorted(session.scalars(select(Node.id)))
        assert report.created == NODES

        # The baseline is the leanest single-row UPDATE the same stack can run: a prebuilt Core statement.
        bare_stmt = (
            update(Node.__table__)
            .where(Node.__table__.c.id == bindparam("b_id"))
            .values(updated_at=bindparam("b_now", type_=UTCDateTime()))
        )

        def bare(i: int) -> None:
            with db.transaction() as session:
                session.connection().execute(bare_stmt, {"b_id": ids[i % NODES], "b_now": db.clock.now()})

        def lifecycle(i: int) -> None:
            event = "quarantine" if (i // NODES) % 2 == 0 else "release"
            transition(db, ids[i % NODES], event, "benchmark", ACTOR)

        # Interleaved blocks, each rate the median over its blocks: a burst of other work on the machine then
        # lands on both sides instead of on whichever ran during it.
        steps = {"bare_update": bare, "transition": lifecycle}
        rates: dict[str, list[float]] = {name: [] for name in steps}
        done = dict.fromkeys(steps, 0)
        for _ in range(WARMUP):  # warm the connection pool and the statement cache
            for name, step in steps.items():
                step(done[name])
                done[name] += 1
        for _ in range(ROUNDS // BLOCK):
            for name, step in steps.items():
                start = time.perf_counter()
                for _ in range(BLOCK):
                    step(done[name])
                    done[name] += 1
                rates[name].append(BLOCK / (time.perf_counter() - start))
    bare_rate = statistics.median(rates["bare_update"])
    transition_rate = statistics.median(rates["transition"])
    ratio = transition_rate / bare_rate
    print(
        json.dumps(
            {
                "figure": "transition_rate",
                "db": args.db,
                "bare_update_per_s": round(bare_rate, 1),
                "transition_per_s": round(transition_rate, 1),
                "ratio": round(ratio, 3),
                "target_ratio": 0.70,
                "met": ratio >= 0.70,
            }
        )
    )


if __name__ == "__main__":
    main()
