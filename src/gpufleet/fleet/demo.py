"""A small, realistic fleet for a first look at gpufleet (``make run``), and for the simulator to bring to life.

The reference data is a fleet document (demo_fleet.yaml); the nodes come from a declared layout, so each node's
serial, rack, NVLink domain and state are the same on every machine. Both go in through the same services as real
imports, so the demo never shows anything a real fleet could not hold.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from importlib.resources import as_file, files
from typing import Any

from gpufleet.adapters.db.models import Node, Supplier
from gpufleet.domain.lifecycle import NodeState
from gpufleet.fleet import store
from gpufleet.fleet.inventory import ImportReport, import_nodes
from gpufleet.fleet.reference import FleetDocument, FleetReport, import_fleet, load_fleet_file
from gpufleet.platform.context import Actor
from gpufleet.platform.database import Database

SEED = 2026
SOURCE = "demo-fleet.jsonl"


@dataclass(frozen=True)
class NodeGroup:
    """One homogeneous slice of a cluster: the same supplier, SKU, naming and rack layout."""

    cluster: str
    supplier: str
    sku: str
    count: int
    host_prefix: str
    serial_prefix: str
    nodes_per_rack: int
    rack_prefix: str
    nodes_per_switch: int
    labels: dict[str, str]
    tenant: str | None = None
    project: str | None = None
    allocated_share: float = 0.0
    nvlink_domains: tuple[str, ...] = ()
    cloud_instances: bool = False


GROUPS: tuple[NodeGroup, ...] = (
    NodeGroup(
        cluster="use1-frontier",
        supplier="northwind-cloud",
        sku="H100-SXM-80GB",
        count=64,
        host_prefix="use1-fr",
        serial_prefix="NW8H",
        nodes_per_rack=4,
        rack_prefix="use1-dc2-r",
        nodes_per_switch=16,
        labels={"pool": "pretrain", "partition": "training"},
        tenant="orbital-ai",
        project="pretrain-llm",
        allocated_share=0.75,
        cloud_instances=True,
    ),
    NodeGroup(
        cluster="use1-inference",
        supplier="northwind-cloud",
        sku="H200-SXM-141GB",
        count=48,
        host_prefix="use1-inf",
        serial_prefix="NW9H",
        nodes_per_rack=4,
        rack_prefix="use1-dc2-s",
        nodes_per_switch=24,
        labels={"pool": "serving"},
        tenant="quanta-labs",
        project="serving",
        allocated_share=0.5,
        cloud_instances=True,
    ),
    NodeGroup(
        cluster="usw2-gb300",
        supplier="helios-systems",
        sku="GB300-NVL72",
        count=54,
        host_prefix="usw2-gb",
        serial_prefix="HX-GB3",
        nodes_per_rack=18,  # an NVL72 rack: 18 compute trays of 4 GPUs
        rack_prefix="usw2-b-r",
        nodes_per_switch=18,
        labels={"pool": "frontier", "partition": "training"},
        tenant="orbital-ai",
        project="frontier-rl",
        allocated_share=0.33,
        nvlink_domains=("nvl72-a01", "nvl72-a02", "nvl72-a03"),
    ),
    NodeGroup(
        cluster="fra1-metal",
        supplier="arcadia-colo",
        sku="H100-SXM-80GB",
        count=34,
        host_prefix="fra1-bm",
        serial_prefix="AC-H1",
        nodes_per_rack=2,
        rack_prefix="fra1-c7-r",
        nodes_per_switch=17,
        labels={"pool": "general"},
        tenant="quanta-labs",
        project="batch-eval",
        allocated_share=0.25,
    ),
)

# How 200 nodes of a working fleet spread over the lifecycle: most serving, a few in every other state.
STATE_MIX: dict[NodeState, int] = {
    NodeState.IN_SERVICE: 140,
    NodeState.RECEIVED: 6,
    NodeState.PROVISIONING: 4,
    NodeState.PROVISION_FAILED: 2,
    NodeState.VALIDATING: 10,
    NodeState.QUARANTINED: 6,
    NodeState.DRAINING: 4,
    NodeState.DRAINED: 3,
    NodeState.DIAGNOSING: 5,
    NodeState.REPAIRING: 5,
    NodeState.AWAITING_SUPPLIER: 5,
    NodeState.MAINTENANCE: 5,
    NodeState.DECOMMISSIONING: 2,
    NodeState.DECOMMISSIONED: 3,
}

# Only nodes a tenant could be running on carry an allocation.
ALLOCATABLE = frozenset({NodeState.IN_SERVICE, NodeState.QUARANTINED, NodeState.DRAINING})

GPUS_PER_SKU = {"H100-SXM-80GB": 8, "H200-SXM-141GB": 8, "GB300-NVL72": 4}


@dataclass(frozen=True)
class DemoSeed:
    fleet: FleetReport
    nodes: ImportReport


def demo_fleet_document() -> FleetDocument:
    with as_file(files("gpufleet.fleet").joinpath("demo_fleet.yaml")) as path:
        return load_fleet_file(str(path))


def _states(total: int) -> list[NodeState]:
    states = [state for state, count in STATE_MIX.items() for _ in range(count)]
    states += [NodeState.IN_SERVICE] * max(0, total - len(states))
    random.Random(SEED).shuffle(states)
    return states[:total]


def _node(group: NodeGroup, group_index: int, index: int, state: NodeState, rng: random.Random) -> dict[str, Any]:
    number = index + 1
    serial = f"{group.serial_prefix}{group_index + 1}{number:04d}"
    gpus = GPUS_PER_SKU[group.sku]
    base = 1_652_300_000_000 + group_index * 10_000_000 + number * 100
    row: dict[str, Any] = {
        "supplier": group.supplier,
        "serial": serial,
        "hostname": f"{group.host_prefix}-{number:03d}",
        "sku": group.sku,
        "cluster": group.cluster,
        "rack": f"{group.rack_prefix}{index // group.nodes_per_rack + 1:02d}",
        "switch": f"ib-leaf-{index // group.nodes_per_switch + 1:02d}",
        "bmc_address": f"10.{20 + group_index}.{index // 200}.{index % 200 + 10}",
        "labels": dict(group.labels),
        "gpu_serials": [str(base + gpu) for gpu in range(gpus)],
        "state": state.value,
        "attributes": {"bios": rng.choice(["1.7.2", "1.7.2", "1.8.0"]), "gpu_driver": "570.133.20"},
    }
    if group.nvlink_domains:
        row["nvlink_domain"] = group.nvlink_domains[index // group.nodes_per_rack]
    if group.cloud_instances:
        row["provider_id"] = "i-0" + hashlib.sha256(serial.encode()).hexdigest()[:16]
    if group.tenant and state in ALLOCATABLE and rng.random() < group.allocated_share:
        row["tenant"] = group.tenant
        row["project"] = group.project
    return row


def demo_inventory() -> list[dict[str, Any]]:
    """The demo nodes as inventory rows, the shape a supplier's JSON inventory has."""
    states = _states(sum(g.count for g in GROUPS))
    rng = random.Random(SEED)
    rows: list[dict[str, Any]] = []
    for group_index, group in enumerate(GROUPS):
        for index in range(group.count):
            rows.append(_node(group, group_index, index, states[len(rows)], rng))
    return rows


def is_empty(db: Database) -> bool:
    with db.reader() as session:
        suppliers = store.count_rows(session, Supplier)
        nodes = store.count_rows(session, Node)
    return suppliers == 0 and nodes == 0


def seed_demo_fleet(db: Database, actor: Actor) -> DemoSeed | None:
    """Load the demo fleet into an empty database; ``None`` when there is data already, which is never touched."""
    if not is_empty(db):
        return None
    fleet = import_fleet(db, demo_fleet_document(), actor)
    text = "\n".join(json.dumps(row) for row in demo_inventory()) + "\n"
    nodes = import_nodes(db, text, SOURCE, actor, fmt="jsonl")
    return DemoSeed(fleet, nodes)


__all__ = ["GROUPS", "DemoSeed", "demo_fleet_document", "demo_inventory", "is_empty", "seed_demo_fleet"]
