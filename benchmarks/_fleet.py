"""A fleet at the size the figures are quoted for: 12,500 nodes with 100,000 GPUs, loaded by the real import.

Four clusters across three suppliers; about three quarters of the nodes in service, the rest spread over the
repair and bring-up states; every node labelled, racked and in an NVLink domain; a third of the in-service nodes
allocated to one of three tenants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gpufleet.fleet.inventory import import_nodes
from gpufleet.fleet.reference import FleetDocument, import_fleet
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, open_database

NODES = 12_500
GPUS_PER_NODE = 8
CLUSTERS = 4
ACTOR = Actor(name="bench", role=Role.ADMIN)
FLEET = {
    "suppliers": [{"name": f"supplier-{i}", "kind": "cloud"} for i in range(3)],
    "clusters": [
        {"name": f"cluster-{i}", "supplier": f"supplier-{i % 3}", "kind": "slurm", "role": "frontier"}
        for i in range(CLUSTERS)
    ],
    "skus": [
        {"name": "H100-SXM-80GB", "gpu_vendor": "nvidia", "gpu_model": "H100", "gpus_per_node": 8, "gpu_memory_gb": 80}
    ],
    "tenants": [{"name": f"tenant-{i}"} for i in range(3)],
}
# Out of every 20 nodes: 15 in service, the rest in the states a real fleet holds at any moment.
STATE_CYCLE = ["in_service"] * 15 + ["quarantined", "drained", "repairing", "awaiting_supplier", "received"]


@dataclass(frozen=True)
class FleetShape:
    nodes: int
    gpus: int
    seconds: float


def inventory_csv(nodes: int = NODES) -> str:
    lines = ["supplier,serial,hostname,sku,cluster,rack,nvlink_domain,labels,gpu_serials,state,tenant"]
    for i in range(nodes):
        cluster = i % CLUSTERS
        state = STATE_CYCLE[i % len(STATE_CYCLE)]
        tenant = f"tenant-{i % 3}" if state == "in_service" and i % 3 == 0 else ""
        gpus = ";".join(f"G{i:06d}-{g}" for g in range(GPUS_PER_NODE))
        lines.append(
            f"supplier-{cluster % 3},SN{i:06d},node-{i:06d},H100-SXM-80GB,cluster-{cluster},"
            f"rack-{i // 32},nvl-{i // 18},pool=p{i % 8};tier={'gold' if i % 5 else 'silver'},{gpus},{state},{tenant}"
        )
    return "\n".join(lines) + "\n"


def populate(db: Database, nodes: int = NODES) -> FleetShape:
    """Load the reference data and the inventory into a migrated, empty database."""
    start = time.perf_counter()
    import_fleet(db, FleetDocument.model_validate(FLEET), ACTOR)
    report = import_nodes(db, inventory_csv(nodes), "fleet.csv", ACTOR)
    if not (report.applied and report.created == nodes):
        raise RuntimeError(report.summary_line())
    return FleetShape(nodes, report.gpus_written, time.perf_counter() - start)


def build_fleet(url: str, nodes: int = NODES) -> Database:
    """Migrate the database at ``url`` and load the fleet into it; the caller disposes of the handle."""
    db = open_database(url)
    db.upgrade()
    populate(db, nodes)
    return db
