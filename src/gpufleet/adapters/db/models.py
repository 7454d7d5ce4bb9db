"""Relational schema of the source of truth. Alembic migrations must match this; a test compares them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key for append-only tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware datetime, so SQLite and PostgreSQL compare alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Supplier(Base):
    __tablename__ = "suppliers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # cloud | vendor | colo | internal


class Region(Base):
    __tablename__ = "regions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"))
    supplier_id: Mapped[int | None] = mapped_column(ForeignKey("suppliers.id"))


class Cluster(Base):
    __tablename__ = "clusters"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    kind: Mapped[str] = mapped_column(String(30))
    role: Mapped[str] = mapped_column(String(20))
    stack: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="active")
    driver: Mapped[str] = mapped_column(String(30), default="simulated")
    driver_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Sku(Base):
    __tablename__ = "skus"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    gpu_vendor: Mapped[str] = mapped_column(String(40))
    gpu_model: Mapped[str] = mapped_column(String(60))
    gpus_per_node: Mapped[int]
    gpu_memory_gb: Mapped[int]


class Rack(Base):
    __tablename__ = "racks"
    __table_args__ = (UniqueConstraint("cluster_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    name: Mapped[str] = mapped_column(String(100))


class NvlinkDomain(Base):
    __tablename__ = "nvlink_domains"
    __table_args__ = (UniqueConstraint("cluster_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str | None] = mapped_column(String(40))  # e.g. GB200-NVL72


class IbSwitch(Base):
    __tablename__ = "ib_switches"
    __table_args__ = (UniqueConstraint("cluster_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    name: Mapped[str] = mapped_column(String(100))


class IbPartition(Base):
    __tablename__ = "ib_partitions"
    __table_args__ = (UniqueConstraint("cluster_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    name: Mapped[str] = mapped_column(String(100))
    pkey: Mapped[str] = mapped_column(String(10))


class Pool(Base):
    __tablename__ = "pools"
    __table_args__ = (UniqueConstraint("cluster_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    name: Mapped[str] = mapped_column(String(100))
    partition_id: Mapped[int | None] = mapped_column(ForeignKey("ib_partitions.id"))


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (
        UniqueConstraint("supplier_id", "serial"),
        Index("ix_nodes_cluster_state_id", "cluster_id", "state", "id"),
        Index("ix_nodes_state_id", "state", "id"),
        Index("ix_nodes_hostname", "hostname"),
        Index("ix_nodes_serial", "serial"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the stable chassis id
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"))
    serial: Mapped[str] = mapped_column(String(100))
    hostname: Mapped[str] = mapped_column(String(255))
    provider_id: Mapped[str | None] = mapped_column(String(255))
    bmc_address: Mapped[str | None] = mapped_column(String(255))
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"))
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    rack_id: Mapped[int | None] = mapped_column(ForeignKey("racks.id"))
    nvlink_domain_id: Mapped[int | None] = mapped_column(ForeignKey("nvlink_domains.id"))
    switch_id: Mapped[int | None] = mapped_column(ForeignKey("ib_switches.id"))
    state: Mapped[str] = mapped_column(String(30))
    previous_state: Mapped[str | None] = mapped_column(String(30))
    state_since: Mapped[datetime]
    version: Mapped[int] = mapped_column(default=1)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class NodeLabel(Base):
    """Labels mirrored into rows so label selectors filter with an index on both databases."""

    __tablename__ = "node_labels"
    __table_args__ = (Index("ix_node_labels_key_value", "key", "value"),)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class Gpu(Base):
    __tablename__ = "gpus"
    __table_args__ = (UniqueConstraint("node_id", "idx"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    idx: Mapped[int]
    serial: Mapped[str | None] = mapped_column(String(100), unique=True)
    uuid: Mapped[str | None] = mapped_column(String(100), unique=True)
    pci_bus_id: Mapped[str | None] = mapped_column(String(40))


class Allocation(Base):
    __tablename__ = "allocations"
    __table_args__ = (Index("ix_allocations_node_ends", "node_id", "ends_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    project: Mapped[str | None] = mapped_column(String(100))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]


class NodeEvent(Base):
    """Append-only history: every change to a node, with who, why, when and a correlation id."""

    __tablename__ = "node_events"
    __table_args__ = (Index("ix_node_events_node_at", "node_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(30))  # transition | created | updated | moved | escalated
    event: Mapped[str | None] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(30))
    to_state: Mapped[str | None] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str] = mapped_column(String(64), index=True)
    # The cluster the node was in when this happened. Deliberately not a foreign key: history outlives clusters,
    # and a key-share lock on the cluster row for every event would serialise a whole cluster's writers.
    cluster_id: Mapped[int | None]
    version: Mapped[int | None]  # the node's version after this change, matching the ETag callers saw
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None]


class ClusterValidationPolicy(Base):
    """A cluster's validation policy; a cluster without a row uses the defaults in the domain."""

    __tablename__ = "validation_policies"
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), primary_key=True)
    fast_track_days: Mapped[int]
    fast_track_suite: Mapped[str] = mapped_column(String(40))
    fast_track_passes: Mapped[int]
    slow_path_suite: Mapped[str] = mapped_column(String(40))
    slow_path_passes: Mapped[int]
    canary_suite: Mapped[str] = mapped_column(String(40))
    config_version: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(200))


class ValidationAttempt(Base):
    """One validation attempt of a node: its path and suite, and a summary kept current as its passes arrive."""

    __tablename__ = "validation_attempts"
    __table_args__ = (
        UniqueConstraint("node_id", "attempt"),
        Index("ix_validation_attempts_status_path", "status", "path"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    attempt: Mapped[int]
    # Not a foreign key, like node_events.cluster_id: history outlives clusters.
    cluster_id: Mapped[int]
    path: Mapped[str] = mapped_column(String(20))  # fast_track | slow_path | canary
    suite: Mapped[str] = mapped_column(String(40))
    passes_required: Mapped[int]
    config_version: Mapped[str | None] = mapped_column(String(100))
    gpus: Mapped[int]  # GPUs in the node when it ran, for GPU-hours
    status: Mapped[str] = mapped_column(String(20))  # in_progress | passed | failed
    passes_recorded: Mapped[int]
    first_failed_pass: Mapped[int | None]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    created_at: Mapped[datetime]


class ValidationResult(Base):
    """One pass of an attempt, as the driver reported it. Append-only."""

    __tablename__ = "validation_results"
    __table_args__ = (UniqueConstraint("attempt_id", "pass_number"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("validation_attempts.id"))
    pass_number: Mapped[int]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    seconds: Mapped[float]
    result: Mapped[str] = mapped_column(String(10))  # pass | fail, after the SKU's criteria
    reported_result: Mapped[str] = mapped_column(String(10))
    checks: Mapped[dict[str, Any]] = mapped_column(default=dict)
    failures: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(255))


class NodeBan(Base):
    """A node taken out of a cluster for failing in service: the fact re-ban rates count."""

    __tablename__ = "node_bans"
    __table_args__ = (Index("ix_node_bans_node_at", "node_id", "at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    cluster_id: Mapped[int]
    at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(200))
    correlation_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class HealthEvent(Base):
    """One observation of a node's health (an Xid line, an nvidia-smi reading, a DCGM result, an alert).

    ``node_id`` is empty when the event named a node or GPU the source of truth does not know: it then sits in the
    visible unmatched list instead of being dropped. ``fingerprint`` makes a repeated delivery of the same observation
    a no-op. ``processed_at`` is the remediation controller's cursor.
    """

    __tablename__ = "health_events"
    __table_args__ = (
        Index("ix_health_events_node_observed", "node_id", "observed_at"),
        Index("ix_health_events_unprocessed", "processed_at", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(30))  # xid | nvidia-smi | dcgm | alertmanager | json | agent
    code: Mapped[str] = mapped_column(String(80))  # e.g. xid:79, ecc:dbe, dcgm:DCGM_FR_..., alert:GPUXidError
    severity: Mapped[str] = mapped_column(String(20))  # info | warning | critical
    status: Mapped[str] = mapped_column(String(20), default="firing")  # firing | resolved
    node_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id"))
    gpu_index: Mapped[int | None]
    subject: Mapped[str] = mapped_column(String(255))  # what the source called the node or GPU, for unmatched events
    message: Mapped[str] = mapped_column(Text)
    observed_at: Mapped[datetime]
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    case_id: Mapped[int | None]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
