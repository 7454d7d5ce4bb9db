"""What the fleet's bookkeeping routes answer: allocations, reference data, inventory imports and tokens. Read from
gpufleet.fleet.allocations, .reference, .inventory_report and .tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from gpufleet.api.schemas import Out

# ---------------------------------------------------------------------------------------------------------------
# Allocations.


class AllocationOut(Out):
    id: int
    node: str = Field(description="The chassis id.")
    tenant: str
    project: str | None
    starts_at: datetime
    ends_at: datetime | None = Field(description="Null: open-ended.")
    active: bool = Field(description="In force now.")


class AllocationEndOut(AllocationOut):
    changed: bool = Field(description="False when the allocation had already ended.")


class AllocationsOut(Out):
    items: list[AllocationOut]


# ---------------------------------------------------------------------------------------------------------------
# Reference data: each section's rows, with the names of what they point at.


class SupplierOut(Out):
    id: int
    name: str
    kind: str


class RegionOut(Out):
    id: int
    name: str


class SiteOut(Out):
    id: int
    name: str
    region_id: int | None
    supplier: str | None


class ClusterOut(Out):
    id: int
    name: str
    supplier: str
    site_id: int | None
    kind: str
    role: str
    stack: str | None
    status: str
    driver: str = Field(description="simulated, slurm or kubernetes; its settings are not shown here.")
    attributes: dict[str, Any]


class SkuOut(Out):
    id: int
    name: str
    gpu_vendor: str
    gpu_model: str
    gpus_per_node: int
    gpu_memory_gb: int


class RackOut(Out):
    id: int
    cluster: str
    name: str


class NvlinkDomainOut(Out):
    id: int
    cluster: str
    name: str
    kind: str | None


class SwitchOut(Out):
    id: int
    cluster: str
    name: str


class PartitionOut(Out):
    id: int
    cluster: str
    name: str
    pkey: str


class PoolOut(Out):
    id: int
    cluster: str
    name: str
    partition_id: int | None


class TenantOut(Out):
    id: int
    name: str


class SuppliersOut(Out):
    items: list[SupplierOut]


class RegionsOut(Out):
    items: list[RegionOut]


class SitesOut(Out):
    items: list[SiteOut]


class ClustersOut(Out):
    items: list[ClusterOut]


class SkusOut(Out):
    items: list[SkuOut]


class RacksOut(Out):
    items: list[RackOut]


class NvlinkDomainsOut(Out):
    items: list[NvlinkDomainOut]


class SwitchesOut(Out):
    items: list[SwitchOut]


class PartitionsOut(Out):
    items: list[PartitionOut]


class PoolsOut(Out):
    items: list[PoolOut]


class TenantsOut(Out):
    items: list[TenantOut]


REFERENCE_LISTS: dict[str, type[Out]] = {
    "suppliers": SuppliersOut,
    "regions": RegionsOut,
    "sites": SitesOut,
    "clusters": ClustersOut,
    "skus": SkusOut,
    "racks": RacksOut,
    "nvlink-domains": NvlinkDomainsOut,
    "switches": SwitchesOut,
    "partitions": PartitionsOut,
    "pools": PoolsOut,
    "tenants": TenantsOut,
}
"""The answer of GET /api/v1/<section>, by section."""


class FleetReportOut(Out):
    created: dict[str, int] = Field(description="Items created, by section.")
    updated: dict[str, int]
    unchanged: dict[str, int]
    changed: bool
    dry_run: bool


# ---------------------------------------------------------------------------------------------------------------
# Inventory imports.


class RowErrorOut(Out):
    line: int
    field: str | None
    message: str


class ImportChangeOut(Out):
    line: int
    id: str = Field(description="The chassis id.")
    serial: str
    action: Literal["created", "updated", "moved"]
    changes: dict[str, list[Any]] = Field(description="Per field: [before, after].")


class ImportReportOut(Out):
    source: str
    rows: int
    created: int
    updated: int
    moved: int
    unchanged: int
    gpus_written: int
    applied: bool
    dry_run: bool
    partial: bool
    ok: bool
    summary: str
    errors: list[RowErrorOut]
    changes: list[ImportChangeOut] = Field(description="What changed (or would), at most 1000.")


# ---------------------------------------------------------------------------------------------------------------
# Tokens.

Role = Literal["viewer", "operator", "admin"]


class TokenIssuedOut(Out):
    id: int
    name: str
    role: Role
    tenant: str | None
    secret: str = Field(description="The token itself: shown in this answer only, never again.")


class TokenOut(Out):
    id: int
    name: str
    prefix: str = Field(description="The first characters of the secret, to tell tokens apart.")
    role: Role
    tenant: str | None
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class TokensOut(Out):
    items: list[TokenOut]


class TokenRevokedOut(Out):
    id: int
    revoked_at: datetime
