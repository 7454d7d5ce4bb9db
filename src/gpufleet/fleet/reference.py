"""Reference data, created or updated by name from one fleet document, all in one transaction.

Covers suppliers, regions, sites, clusters, SKUs, racks, NVLink domains, switches, partitions, pools and tenants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpufleet.adapters.db.models import (
    Cluster,
    IbPartition,
    IbSwitch,
    NvlinkDomain,
    Pool,
    Rack,
    Region,
    Site,
    Sku,
    Supplier,
    Tenant,
)
from gpufleet.adapters.formats.documents import DocumentError, read_document
from gpufleet.fleet import store
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput

Name = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
CLUSTER_KINDS = ("kubernetes", "slurm", "slurm-on-kubernetes", "bare-metal")


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SupplierIn(_Item):
    name: str = Name
    kind: Literal["cloud", "vendor", "colo", "internal"]


class RegionIn(_Item):
    name: str = Name


class SiteIn(_Item):
    name: str = Name
    region: str | None = None
    supplier: str | None = None


class ClusterIn(_Item):
    name: str = Name
    supplier: str
    kind: Literal["kubernetes", "slurm", "slurm-on-kubernetes", "bare-metal"]
    role: Literal["frontier", "fleet"]
    stack: str | None = Field(default=None, max_length=100)
    site: str | None = None
    status: Literal["active", "decommissioning", "decommissioned"] = "active"
    attributes: dict[str, Any] = Field(default_factory=dict)


class SkuIn(_Item):
    name: str = Name
    gpu_vendor: str = Field(min_length=1, max_length=40)
    gpu_model: str = Field(min_length=1, max_length=60)
    gpus_per_node: int = Field(ge=0, le=1024)
    gpu_memory_gb: int = Field(ge=0, le=100_000)


class ClusterScopedIn(_Item):
    cluster: str
    name: str = Name


class NvlinkDomainIn(ClusterScopedIn):
    kind: str | None = Field(default=None, max_length=40)


class PartitionIn(ClusterScopedIn):
    pkey: str = Field(pattern=r"^0x[0-9a-fA-F]{1,4}$")


class PoolIn(ClusterScopedIn):
    partition: str | None = None


class TenantIn(_Item):
    name: str = Name


class FleetDocument(_Item):
    suppliers: list[SupplierIn] = Field(default_factory=list)
    regions: list[RegionIn] = Field(default_factory=list)
    sites: list[SiteIn] = Field(default_factory=list)
    clusters: list[ClusterIn] = Field(default_factory=list)
    skus: list[SkuIn] = Field(default_factory=list)
    racks: list[ClusterScopedIn] = Field(default_factory=list)
    nvlink_domains: list[NvlinkDomainIn] = Field(default_factory=list)
    switches: list[ClusterScopedIn] = Field(default_factory=list)
    partitions: list[PartitionIn] = Field(default_factory=list)
    pools: list[PoolIn] = Field(default_factory=list)
    tenants: list[TenantIn] = Field(default_factory=list)


@dataclass
class FleetReport:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def count(self, bucket: dict[str, int], section: str) -> None:
        bucket[section] = bucket.get(section, 0) + 1

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "changed": self.changed,
            "dry_run": self.dry_run,
        }


def parse_fleet_document(data: Any, line_of: Callable[[tuple[str | int, ...]], int | None]) -> FleetDocument:
    """Validate a fleet document, turning the first problems into one error that names the field and line."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput("a fleet document must be a mapping of sections (suppliers, clusters, skus, ...)", line=1)
    try:
        return FleetDocument.model_validate(data)
    except ValidationError as exc:
        problems = []
        first_line: int | None = None
        for err in exc.errors()[:5]:
            loc = tuple(err["loc"])
            where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
            line = line_of(loc)
            first_line = first_line or line
            prefix = f"line {line}: " if line else ""
            problems.append(f"{prefix}{where}: {err['msg']}")
        raise InvalidInput("; ".join(problems)) from None


def load_fleet_file(path: str) -> FleetDocument:
    """Read and validate a YAML or JSON fleet document from disk, so entry points never touch the parsers."""
    try:
        data, line_of = read_document(Path(path))
    except DocumentError as exc:
        raise InvalidInput(str(exc), line=exc.line) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    return parse_fleet_document(data, line_of)


class _Names:
    """Name-to-id lookups for one import, loaded once so resolution is a dict hit, not a query."""

    def __init__(self, session: UnitOfWork) -> None:
        self.session = session
        self.suppliers = store.ids_by_name(session, Supplier)
        self.regions = store.ids_by_name(session, Region)
        self.sites = store.ids_by_name(session, Site)
        self.clusters = store.ids_by_name(session, Cluster)

    def need(self, table: dict[str, int], kind: str, name: str | None, where: str) -> int | None:
        if name is None:
            return None
        if name not in table:
            raise InvalidInput(f"unknown {kind} '{name}'", field=where)
        return table[name]


def _upsert(
    session: UnitOfWork,
    report: FleetReport,
    section: str,
    model: type[Any],
    key: dict[str, Any],
    values: dict[str, Any],
) -> Any:
    existing = store.find_by_key(session, model, key)
    if existing is None:
        obj = model(**key, **values)
        store.add_row(session, obj)
        report.count(report.created, section)
        return obj
    changed = False
    for name, value in values.items():
        if getattr(existing, name) != value:
            setattr(existing, name, value)
            changed = True
    report.count(report.updated if changed else report.unchanged, section)
    return existing


def apply_fleet_document(session: UnitOfWork, doc: FleetDocument, report: FleetReport) -> None:
    """Upsert every section in dependency order inside the caller's transaction."""
    names = _Names(session)
    for s in doc.suppliers:
        names.suppliers[s.name] = _upsert(session, report, "suppliers", Supplier, {"name": s.name}, {"kind": s.kind}).id
    for r in doc.regions:
        names.regions[r.name] = _upsert(session, report, "regions", Region, {"name": r.name}, {}).id
    for i, site in enumerate(doc.sites):
        values: dict[str, Any] = {
            "region_id": names.need(names.regions, "region", site.region, f"sites[{i}].region"),
            "supplier_id": names.need(names.suppliers, "supplier", site.supplier, f"sites[{i}].supplier"),
        }
        names.sites[site.name] = _upsert(session, report, "sites", Site, {"name": site.name}, values).id
    for i, c in enumerate(doc.clusters):
        values = {
            "supplier_id": names.need(names.suppliers, "supplier", c.supplier, f"clusters[{i}].supplier"),
            "site_id": names.need(names.sites, "site", c.site, f"clusters[{i}].site"),
            "kind": c.kind,
            "role": c.role,
            "stack": c.stack,
            "status": c.status,
            "attributes": c.attributes,
        }
        names.clusters[c.name] = _upsert(session, report, "clusters", Cluster, {"name": c.name}, values).id
    for sku in doc.skus:
        values = sku.model_dump(exclude={"name"})
        _upsert(session, report, "skus", Sku, {"name": sku.name}, values)
    scoped: list[tuple[str, type[Any], list[Any]]] = [
        ("racks", Rack, doc.racks),
        ("nvlink_domains", NvlinkDomain, doc.nvlink_domains),
        ("switches", IbSwitch, doc.switches),
        ("partitions", IbPartition, doc.partitions),
    ]
    for section, model, items in scoped:
        for i, item in enumerate(items):
            cluster_id = names.need(names.clusters, "cluster", item.cluster, f"{section}[{i}].cluster")
            values = item.model_dump(exclude={"cluster", "name"})
            _upsert(session, report, section, model, {"cluster_id": cluster_id, "name": item.name}, values)
    for i, pool in enumerate(doc.pools):
        cluster_id = names.need(names.clusters, "cluster", pool.cluster, f"pools[{i}].cluster")
        partition_id = None
        if pool.partition:
            partition_id = store.partition_id(session, cluster_id, pool.partition)
            if partition_id is None:
                raise InvalidInput(
                    f"unknown partition '{pool.partition}' in cluster '{pool.cluster}'",
                    field=f"pools[{i}].partition",
                )
        key = {"cluster_id": cluster_id, "name": pool.name}
        _upsert(session, report, "pools", Pool, key, {"partition_id": partition_id})
    for t in doc.tenants:
        _upsert(session, report, "tenants", Tenant, {"name": t.name}, {})


def import_fleet(db: Database, doc: FleetDocument, actor: Actor, dry_run: bool = False) -> FleetReport:
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("changing reference data needs the operator role and a token not scoped to a tenant")
    report = FleetReport(dry_run=dry_run)
    with db.transaction() as session:
        apply_fleet_document(session, doc, report)
        if dry_run:
            session.rollback()
    return report


def list_reference(db: Database, section: str) -> list[dict[str, Any]]:
    """Reference rows by name, with the names of what they point at instead of ids."""
    models: dict[str, type[Any]] = {
        "suppliers": Supplier,
        "regions": Region,
        "sites": Site,
        "clusters": Cluster,
        "skus": Sku,
        "racks": Rack,
        "nvlink_domains": NvlinkDomain,
        "switches": IbSwitch,
        "partitions": IbPartition,
        "pools": Pool,
        "tenants": Tenant,
    }
    if section not in models:
        raise InvalidInput(f"unknown section '{section}'; choose from {', '.join(models)}", field="section")
    model = models[section]
    with db.reader() as session:
        clusters = store.names_by_id(session, Cluster)
        suppliers = store.names_by_id(session, Supplier)
        out = []
        for row in store.reference_rows(session, model):
            if "cluster_id" in row:
                row["cluster"] = clusters.get(row.pop("cluster_id"))
            if "supplier_id" in row:
                row["supplier"] = suppliers.get(row.pop("supplier_id"))
            row.pop("driver_config", None)
            out.append(row)
        return out
