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
    text,
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
        # Per cluster and state, in id order: the console's and the controllers' filter. There is deliberately no
        # index on state alone: every transition would rewrite two more pages of it, and a fleet-wide state filter
        # at 12,500 nodes reads the table in a few milliseconds.
        Index("ix_nodes_cluster_state_id", "cluster_id", "state", "id"),
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
    correlation_id: Mapped[str] = mapped_column(String(64))
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


_CASE_EVENTS = text("case_id IS NOT NULL")


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
        # A case's evidence; most events are noise that never joins a case, and a partial index leaves their writes
        # alone.
        Index("ix_health_events_case", "case_id", sqlite_where=_CASE_EVENTS, postgresql_where=_CASE_EVENTS),
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


class RemediationCase(Base):
    """One node incident and its trip through remediation; the controller's work queue is its ``next_check_at``.

    ``open_node_id`` holds the node while the case is open and is cleared when it closes: its unique constraint is
    what makes "one open case per node" hold under concurrent writers on both databases. ``pending`` records an
    action's intent before the driver is called, so a restarted controller observes instead of acting twice.
    """

    __tablename__ = "remediation_cases"
    __table_args__ = (
        UniqueConstraint("open_node_id"),
        Index("ix_remediation_cases_due", "next_check_at"),
        Index("ix_remediation_cases_node_opened", "node_id", "opened_at"),
        Index("ix_remediation_cases_cluster_state", "cluster_id", "state"),
        Index("ix_remediation_cases_cluster_opened", "cluster_id", "opened_at"),
        Index("ix_remediation_cases_closed", "closed_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    open_node_id: Mapped[str | None] = mapped_column(String(40))
    # Where the node was when the case opened; not foreign keys, like node_events.cluster_id.
    cluster_id: Mapped[int]
    nvlink_domain_id: Mapped[int | None]
    supplier_id: Mapped[int]
    pool: Mapped[str | None] = mapped_column(String(100))  # the node's ``pool`` label: overrides may target it
    hostname: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(20))
    state_since: Mapped[datetime]
    action: Mapped[str | None] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(default=0)
    start_action: Mapped[str] = mapped_column(String(20))
    floor_action: Mapped[str | None] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(20))
    owner: Mapped[str] = mapped_column(String(20))
    drain: Mapped[str] = mapped_column(String(20))
    codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    gpu_index: Mapped[int | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    policy_version: Mapped[str] = mapped_column(String(40))
    dry_run: Mapped[bool] = mapped_column(default=False)
    human: Mapped[bool] = mapped_column(default=False)
    held: Mapped[str | None] = mapped_column(String(20))
    detected_at: Mapped[datetime]
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(String(30))
    next_check_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    pending: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_id: Mapped[str | None] = mapped_column(String(200))
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ticket_id: Mapped[int | None]
    correlation_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(default=1)


class RemediationStep(Base):
    """Append-only: each thing a case went through, when, and who or what did it."""

    __tablename__ = "remediation_steps"
    __table_args__ = (Index("ix_remediation_steps_case", "case_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("remediation_cases.id"))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # transition | action | hold | note | override | escalation | dry_run
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RemediationOverride(Base):
    """An operator's change to the health policy for a cluster, a pool in it (node label ``pool``), or the fleet."""

    __tablename__ = "remediation_overrides"
    __table_args__ = (Index("ix_remediation_overrides_scope", "cluster_id", "pool"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id"))
    pool: Mapped[str | None] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(120))
    value: Mapped[Any] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    revoke_reason: Mapped[str | None] = mapped_column(Text)


class RemediationBreaker(Base):
    """A cluster's circuit breaker: open stops automation taking more nodes out until a person resets it."""

    __tablename__ = "remediation_breakers"
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(10))  # open | closed
    tripped_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reset_at: Mapped[datetime | None]
    reset_by: Mapped[str | None] = mapped_column(String(200))
    reset_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=1)


class Reboot(Base):
    """A reboot gpufleet asked for or saw: whether the node went down, came back, and how long that took."""

    __tablename__ = "reboots"
    __table_args__ = (
        Index("ix_reboots_node_requested", "node_id", "requested_at"),
        Index("ix_reboots_outcome", "outcome"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    cluster_id: Mapped[int]
    case_id: Mapped[int | None]
    source: Mapped[str] = mapped_column(String(20))  # requested | observed
    reason: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime]
    went_down_at: Mapped[datetime | None]
    came_back_at: Mapped[datetime | None]
    seconds: Mapped[float | None]
    outcome: Mapped[str] = mapped_column(String(20))  # pending | returned | not_returned


class Ticket(Base):
    """An RMA or escalation for one hardware unit at its supplier; ``open_unit`` dedupes open tickets per unit."""

    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("open_unit"), Index("ix_tickets_supplier_status", "supplier_id", "status"))
    id: Mapped[int] = mapped_column(primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"))
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    unit: Mapped[str] = mapped_column(String(200))  # node:<serial> or gpu:<serial>
    open_unit: Mapped[str | None] = mapped_column(String(220))
    gpu_serial: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))  # rma | escalation
    status: Mapped[str] = mapped_column(String(20))  # open | sent | acknowledged | resolved | closed
    summary: Mapped[str] = mapped_column(Text)
    case_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    external_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(default=1)


class NotificationChannel(Base):
    """Where notifications go: a generic webhook, optionally the one for one supplier's tickets."""

    __tablename__ = "notification_channels"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # webhook
    url: Mapped[str] = mapped_column(String(1000))
    supplier_id: Mapped[int | None] = mapped_column(ForeignKey("suppliers.id"))
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(200))


class OutboxMessage(Base):
    """A notification waiting to be delivered, kept until the receiver took it: nothing is lost while it is down."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # the idempotency key the receiver sees
    channel: Mapped[str | None] = mapped_column(String(100))
    topic: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20))  # pending | sent | unrouted | dead
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    ticket_id: Mapped[int | None]


class AgentRequest(Base):
    """Work the server asks of a node's agent, such as a DCGM diagnostic; the agent takes it when it polls.

    A taken request that never reports back is offered again after a lease, so an agent that died mid-run does not
    leave the request hanging.
    """

    __tablename__ = "agent_requests"
    __table_args__ = (Index("ix_agent_requests_node_status", "node_id", "status"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    kind: Mapped[str] = mapped_column(String(30))  # dcgm-diag
    level: Mapped[int]
    status: Mapped[str] = mapped_column(String(20))  # pending | running | done | failed
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    finished_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
