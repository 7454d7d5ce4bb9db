"""Turning a scenario's fleet into reference data and supplier inventories, loaded through the real import services.

The simulator writes nothing to the database itself: the fleet arrives the way a user's would, as a fleet document
and inventory files, so the import services (and their checks) are exercised at the simulated fleet's scale.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpufleet.fleet.inventory import ImportReport, chassis_id, import_nodes
from gpufleet.fleet.reference import FleetDocument, import_fleet
from gpufleet.platform.context import Actor
from gpufleet.platform.database import Database
from gpufleet.reports.sim_history import reference_names
from gpufleet.sim.scenario import ClusterSpec, Scenario

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PlannedNode:
    id: str
    serial: str
    hostname: str
    cluster: str
    supplier: str
    sku: str
    gpus: int
    rack: str
    nvlink_domain: str | None
    tenant: str | None


def fleet_document(scenario: Scenario) -> FleetDocument:
    fleet = scenario.fleet
    domains: list[dict[str, Any]] = []
    tenants: list[dict[str, Any]] = []
    for c in fleet.clusters:
        for name in c.tenants:
            if {"name": name} not in tenants:
                tenants.append({"name": name})
    for node in plan_nodes(scenario):
        if node.nvlink_domain is not None:
            entry = {"cluster": node.cluster, "name": node.nvlink_domain, "kind": _domain_kind(scenario, node)}
            if not domains or domains[-1] != entry:
                domains.append(entry)
    return FleetDocument.model_validate(
        {
            "suppliers": [s.model_dump() for s in fleet.suppliers],
            "skus": [s.model_dump() for s in fleet.skus],
            "clusters": [
                {"name": c.name, "supplier": c.supplier, "kind": c.kind, "role": c.role, "stack": c.stack}
                for c in fleet.clusters
            ],
            "nvlink_domains": domains,
            "tenants": tenants,
        }
    )


def _domain_kind(scenario: Scenario, node: PlannedNode) -> str | None:
    for c in scenario.fleet.clusters:
        if c.name == node.cluster:
            for g in c.nodes:
                if g.sku == node.sku and g.nvlink_domain_kind:
                    return g.nvlink_domain_kind
    return None


def _cluster_nodes(
    scenario: Scenario, cluster: ClusterSpec, groups: list[tuple[str, int, int, int | None]], first: int
) -> list[PlannedNode]:
    """Nodes numbered from ``first`` within the cluster; racks and NVLink domains fill in order."""
    gpus = {s.name: s.gpus_per_node for s in scenario.fleet.skus}
    out: list[PlannedNode] = []
    index = first
    rack_no = first // 16
    for sku, count, per_rack, domain_size in groups:
        in_rack = 0
        domain_no = index // domain_size if domain_size else 0
        in_domain = 0
        for _ in range(count):
            if in_rack == per_rack:
                rack_no += 1
                in_rack = 0
            if domain_size and in_domain == domain_size:
                domain_no += 1
                in_domain = 0
            serial = f"{cluster.name}-{index:05d}"
            tenant = cluster.tenants[index % len(cluster.tenants)] if cluster.tenants else None
            out.append(
                PlannedNode(
                    id=chassis_id(cluster.supplier, serial),
                    serial=serial,
                    hostname=f"{cluster.name}-n{index:05d}",
                    cluster=cluster.name,
                    supplier=cluster.supplier,
                    sku=sku,
                    gpus=gpus[sku],
                    rack=f"r{rack_no:04d}",
                    nvlink_domain=f"nvl{domain_no:04d}" if domain_size else None,
                    tenant=tenant,
                )
            )
            index += 1
            in_rack += 1
            in_domain += 1
        rack_no += 1
    return out


def plan_nodes(scenario: Scenario) -> list[PlannedNode]:
    out: list[PlannedNode] = []
    for c in scenario.fleet.clusters:
        groups = [(g.sku, g.count, g.nodes_per_rack, g.nvlink_domain_size) for g in c.nodes]
        out.extend(_cluster_nodes(scenario, c, groups, 0))
    return out


def plan_delivery(scenario: Scenario, cluster_name: str, sku: str, count: int, first: int) -> list[PlannedNode]:
    cluster = next(c for c in scenario.fleet.clusters if c.name == cluster_name)
    group = next((g for g in cluster.nodes if g.sku == sku), None)
    per_rack = group.nodes_per_rack if group else 16
    domain = group.nvlink_domain_size if group else None
    return _cluster_nodes(scenario, cluster, [(sku, count, per_rack, domain)], first)


def inventory_jsonl(nodes: list[PlannedNode], state: str | None) -> str:
    """A supplier inventory in JSONL, one node per line, with GPU serials in index order."""
    lines = []
    for n in nodes:
        row: dict[str, Any] = {
            "supplier": n.supplier,
            "serial": n.serial,
            "hostname": n.hostname,
            "sku": n.sku,
            "cluster": n.cluster,
            "rack": n.rack,
            "gpu_serials": [f"{n.serial}-g{i}" for i in range(n.gpus)],
        }
        if n.nvlink_domain:
            row["nvlink_domain"] = n.nvlink_domain
        if n.tenant:
            row["tenant"] = n.tenant
        if state:
            row["state"] = state
        lines.append(json.dumps(row, separators=(",", ":")))
    return "\n".join(lines) + "\n"


class FleetLoadError(RuntimeError):
    pass


def load_reference(db: Database, scenario: Scenario, actor: Actor, only_missing: bool = False) -> None:
    """Create the scenario's suppliers, SKUs, clusters, NVLink domains and tenants.

    ``only_missing`` leaves what a database already defines untouched (a live demo on a seeded database must not
    overwrite a cluster's site or attributes with the scenario's sparser view of it).
    """
    doc = fleet_document(scenario)
    if only_missing:
        have = reference_names(db)
        doc = FleetDocument(
            suppliers=[s for s in doc.suppliers if s.name not in have["suppliers"]],
            skus=[s for s in doc.skus if s.name not in have["skus"]],
            clusters=[c for c in doc.clusters if c.name not in have["clusters"]],
            nvlink_domains=[d for d in doc.nvlink_domains if f"{d.cluster}/{d.name}" not in have["nvlink_domains"]],
            tenants=[t for t in doc.tenants if t.name not in have["tenants"]],
        )
    import_fleet(db, doc, actor)


def load_nodes(
    db: Database,
    nodes: list[PlannedNode],
    actor: Actor,
    state: str | None,
    source: str,
    progress: Progress | None = None,
) -> ImportReport:
    if not nodes:
        return ImportReport(source=source)
    report = import_nodes(db, inventory_jsonl(nodes, state), source, actor, fmt="jsonl", progress=progress)
    if not report.ok:
        first = "; ".join(str(e) for e in report.errors[:3])
        raise FleetLoadError(f"the simulated inventory {source} was refused: {first}")
    return report
