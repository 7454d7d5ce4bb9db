"""Test data builders: a small reference fleet and nodes, made through the real services."""

from __future__ import annotations

from typing import Any

from gpufleet.fleet.reference import FleetDocument, import_fleet
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database

ADMIN = Actor(name="test:admin", role=Role.ADMIN)
OPERATOR = Actor(name="test:operator", role=Role.OPERATOR)
VIEWER = Actor(name="test:viewer", role=Role.VIEWER)

FLEET: dict[str, Any] = {
    "suppliers": [{"name": "acme-cloud", "kind": "cloud"}, {"name": "bolt-hw", "kind": "vendor"}],
    "regions": [{"name": "us-east"}],
    "sites": [{"name": "use1-a", "region": "us-east", "supplier": "acme-cloud"}],
    "clusters": [
        {"name": "east-frontier", "supplier": "acme-cloud", "kind": "slurm", "role": "frontier", "stack": "slurm-23"},
        {"name": "west-fleet", "supplier": "bolt-hw", "kind": "kubernetes", "role": "fleet", "stack": "k8s-1.31"},
    ],
    "skus": [
        {"name": "H100-SXM-80GB", "gpu_vendor": "nvidia", "gpu_model": "H100", "gpus_per_node": 8, "gpu_memory_gb": 80},
        {"name": "GB300-NVL72", "gpu_vendor": "nvidia", "gpu_model": "GB300", "gpus_per_node": 4, "gpu_memory_gb": 288},
    ],
    "tenants": [{"name": "tenant-a"}, {"name": "tenant-b"}],
}


def seed_reference(db: Database) -> None:
    import_fleet(db, FleetDocument.model_validate(FLEET), ADMIN)
