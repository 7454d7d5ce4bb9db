"""Figure: gpufleet drains and resumes 8 nodes of a real Slurm (loopback, tests/fixtures/slurm); the time gpufleet
adds on top of Slurm's own commands (scontrol/sinfo/squeue wall time, measured inside the driver)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.slurm.cluster import NODE_NAMES, start_cluster

from _db import backend_arg, scratch_database
from bench_import import ACTOR, FLEET
from gpufleet.adapters.drivers.slurm import SlurmDriver
from gpufleet.clusters.drivers import DriverRegistry, cluster_target, set_cluster_driver
from gpufleet.clusters.sync import sync_cluster
from gpufleet.fleet.inventory import import_nodes
from gpufleet.fleet.lifecycle import transition
from gpufleet.fleet.reference import FleetDocument, import_fleet

ROUNDS = 5


def main() -> None:
    args = backend_arg(__doc__ or "")
    cluster = start_cluster()
    try:
        with scratch_database(args.db) as db:
            import_fleet(db, FleetDocument.model_validate(FLEET), ACTOR)
            rows = ["supplier,serial,hostname,sku,cluster,state"]
            rows += [
                f"supplier-0,B{i:03d},{name},H100-SXM-80GB,cluster-0,in_service" for i, name in enumerate(NODE_NAMES)
            ]
            assert import_nodes(db, "\n".join(rows) + "\n", "bench.csv", ACTOR).created == len(NODE_NAMES)
            set_cluster_driver(db, "cluster-0", "slurm", {"conf": cluster.conf}, ACTOR)
            registry = DriverRegistry(db.clock)
            driver = registry.create(cluster_target(db, "cluster-0"))
            assert isinstance(driver, SlurmDriver)
            sync_cluster(db, "cluster-0", ACTOR, registry)  # first observations, outside the timing
            drain_wall = drain_slurm = resume_wall = resume_slurm = 0.0
            for _ in range(ROUNDS):
                for name in NODE_NAMES:
                    transition(db, name, "quarantine", "benchmark", ACTOR)
                driver.stats.reset()
                start = time.perf_counter()
                report = sync_cluster(db, "cluster-0", ACTOR, registry)
                drain_wall += time.perf_counter() - start
                drain_slurm += driver.stats.seconds
                assert len(report.actions) == len(NODE_NAMES) and not report.failures, report.as_dict()
                assert all(cluster.state(n) == "drained" for n in NODE_NAMES)
                for name in NODE_NAMES:
                    transition(db, name, "release", "benchmark", ACTOR)
                driver.stats.reset()
                start = time.perf_counter()
                report = sync_cluster(db, "cluster-0", ACTOR, registry)
                resume_wall += time.perf_counter() - start
                resume_slurm += driver.stats.seconds
                assert len(report.actions) == len(NODE_NAMES) and not report.failures, report.as_dict()
                cluster.wait("nodes idle", lambda: all(cluster.state(n) == "idle" for n in NODE_NAMES))
                sync_cluster(db, "cluster-0", ACTOR, registry)  # record the return, outside the timing
    finally:
        cluster.stop()
    per = 1000 / ROUNDS
    result = {
        "figure": "slurm_drain_resume_8_nodes",
        "db": args.db,
        "rounds": ROUNDS,
        "nodes": len(NODE_NAMES),
        "drain_ms": round(drain_wall * per, 1),
        "drain_slurm_ms": round(drain_slurm * per, 1),
        "drain_gpufleet_added_ms": round((drain_wall - drain_slurm) * per, 1),
        "resume_ms": round(resume_wall * per, 1),
        "resume_slurm_ms": round(resume_slurm * per, 1),
        "resume_gpufleet_added_ms": round((resume_wall - resume_slurm) * per, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
