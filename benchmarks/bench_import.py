"""Figure: import 12,500 nodes with 100,000 GPUs (target < 20 s), then re-import the unchanged file (< 10 s)."""

from __future__ import annotations

import json
import time

from _db import backend_arg, scratch_database
from gpufleet.fleet.inventory import import_nodes
from gpufleet.fleet.reference import FleetDocument, import_fleet
from gpufleet.platform.context import Actor, Role

NODES = 12_500
ACTOR = Actor(name="bench", role=Role.ADMIN)
FLEET = {
    "suppliers": [{"name": f"supplier-{i}", "kind": "cloud"} for i in range(3)],
    "clusters": [
        {"name": f"cluster-{i}", "supplier": f"supplier-{i % 3}", "kind": "slurm", "role": "frontier"} for i in range(4)
    ],
    "skus": [
        {"name": "H100-SXM-80GB", "gpu_vendor": "nvidia", "gpu_model": "H100", "gpus_per_node": 8, "gpu_memory_gb": 80}
    ],
}


def inventory_csv(nodes: int = NODES) -> str:
    lines = ["supplier,serial,hostname,sku,cluster,rack,nvlink_domain,labels,gpu_serials"]
    for i in range(nodes):
        cluster = i % 4
        gpus = ";".join(f"G{i:06d}-{g}" for g in range(8))
        lines.append(
            f"supplier-{cluster % 3},SN{i:06d},node-{i:06d},H100-SXM-80GB,cluster-{cluster},"
            f"rack-{i // 32},nvl-{i // 18},pool=p{i % 8};tier=gold,{gpus}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = backend_arg(__doc__ or "")
    text = inventory_csv()
    with scratch_database(args.db) as db:
        import_fleet(db, FleetDocument.model_validate(FLEET), ACTOR)
        start = time.perf_counter()
        first = import_nodes(db, text, "bench.csv", ACTOR)
        first_s = time.perf_counter() - start
        assert first.applied and first.created == NODES, first.summary_line()
        start = time.perf_counter()
        again = import_nodes(db, text, "bench.csv", ACTOR)
        again_s = time.perf_counter() - start
        assert again.unchanged == NODES and not again.applied, again.summary_line()
    print(
        json.dumps(
            {
                "figure": "inventory_import",
                "db": args.db,
                "nodes": NODES,
                "gpus": first.gpus_written,
                "import_seconds": round(first_s, 2),
                "reimport_seconds": round(again_s, 2),
                "import_target_seconds": 20,
                "reimport_target_seconds": 10,
                "met": first_s < 20 and again_s < 10,
            }
        )
    )


if __name__ == "__main__":
    main()
