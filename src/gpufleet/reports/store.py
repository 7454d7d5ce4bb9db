"""Every statement reports runs: read-only queries over the other capabilities' tables.

By topic: the fleet metrics a scrape reads (``metrics``), the remediation figures and gauges (``remediation``), and
what the simulator reads back (``sim_history``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, extract, func, or_, select

from gpufleet.adapters.db.models import (
    Cluster,
    Node,
    NodeEvent,
    NvlinkDomain,
    OutboxMessage,
    RemediationBreaker,
    RemediationCase,
    RemediationStep,
    Sku,
    Supplier,
    Tenant,
)
from gpufleet.platform.database import UnitOfWork

# --- Metrics --------------------------------------------------------------------------------------------------------


def cluster_names(session: UnitOfWork) -> list[str]:
    """Every cluster's name, in order."""
    return list(session.execute(select(Cluster.name).order_by(Cluster.name)).scalars())


def node_groups(session: UnitOfWork) -> Sequence[Row[str, str, int, int, Any, datetime]]:
    """One row per (state, cluster): nodes, their GPUs, the sum of their ``state_since`` as epoch seconds and the
    oldest ``state_since``. One grouped query keeps a scrape cheap at fleet size."""
    epoch = extract("epoch", Node.state_since)
    query = (
        select(
            Node.state,
            Cluster.name,
            func.count(),
            func.coalesce(func.sum(Sku.gpus_per_node), 0),
            func.sum(epoch),
            func.min(Node.state_since),
        )
        .join(Cluster, Cluster.id == Node.cluster_id)
        .join(Sku, Sku.id == Node.sku_id)
        .group_by(Node.state, Cluster.name)
    )
    return session.execute(query).all()


# --- Remediation figures --------------------------------------------------------------------------------------------


def supplier_names(session: UnitOfWork) -> dict[int, str]:
    return dict(session.execute(select(Supplier.id, Supplier.name)).all())


def cluster_names_by_id(session: UnitOfWork) -> dict[int, str]:
    return dict(session.execute(select(Cluster.id, Cluster.name)).all())


def case_outcomes(
    session: UnitOfWork, since: datetime | None = None
) -> Sequence[Row[str, str, str | None, bool, bool, datetime, datetime | None, int, int, str | None]]:
    """Of every case opened since ``since``: kind, state, resolution, human, dry_run, detected_at, closed_at,
    supplier_id, cluster_id and action, by name."""
    query = select(
        RemediationCase.kind,
        RemediationCase.state,
        RemediationCase.resolution,
        RemediationCase.human,
        RemediationCase.dry_run,
        RemediationCase.detected_at,
        RemediationCase.closed_at,
        RemediationCase.supplier_id,
        RemediationCase.cluster_id,
        RemediationCase.action,
    )
    if since is not None:
        query = query.where(RemediationCase.opened_at >= since)
    return session.execute(query).all()


def reintegrated_transitions(
    session: UnitOfWork, since: datetime | None = None
) -> tuple[Sequence[Row[int, str, datetime]], Sequence[Row[int, datetime, str | None]]]:
    """The reintegrated cases opened since ``since`` that were not dry runs, as (id, kind, detected_at), and their
    transition steps as (case_id, at, to_state), by case then in order."""
    cases = select(RemediationCase.id, RemediationCase.kind, RemediationCase.detected_at).where(
        RemediationCase.resolution == "reintegrated", RemediationCase.dry_run.is_(False)
    )
    if since is not None:
        cases = cases.where(RemediationCase.opened_at >= since)
    case_rows = session.execute(cases).all()
    steps = session.execute(
        select(RemediationStep.case_id, RemediationStep.at, RemediationStep.to_state)
        .where(RemediationStep.kind == "transition", RemediationStep.case_id.in_(select(cases.subquery().c.id)))
        .order_by(RemediationStep.case_id, RemediationStep.id)
    ).all()
    return case_rows, steps


def open_cases_by_state_and_cluster(session: UnitOfWork) -> Sequence[Row[str, str, int]]:
    """(state, cluster name, count) of the cases still holding their node."""
    return session.execute(
        select(RemediationCase.state, Cluster.name, func.count())
        .join(Cluster, Cluster.id == RemediationCase.cluster_id)
        .where(RemediationCase.open_node_id.is_not(None))
        .group_by(RemediationCase.state, Cluster.name)
    ).all()


def breaker_states(session: UnitOfWork) -> Sequence[Row[str, str]]:
    """(cluster name, breaker state) of every cluster's circuit breaker."""
    return session.execute(
        select(Cluster.name, RemediationBreaker.state).join(Cluster, Cluster.id == RemediationBreaker.cluster_id)
    ).all()


def outbox_counts(session: UnitOfWork) -> Sequence[Row[str, int]]:
    """(status, count) of the outbox's messages."""
    return session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all()


# --- Simulator history ----------------------------------------------------------------------------------------------


def node_count(session: UnitOfWork) -> int:
    return int(session.execute(select(func.count()).select_from(Node)).scalar_one())


def node_states(session: UnitOfWork, ids: Sequence[str]) -> dict[str, str]:
    """Current state of each listed node that exists; missing ids are left out."""
    out: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        out.update({i: s for i, s in session.execute(select(Node.id, Node.state).where(Node.id.in_(chunk)))})
    return out


def node_state(session: UnitOfWork, node_id: str) -> str | None:
    state = session.execute(select(Node.state).where(Node.id == node_id)).scalar_one_or_none()
    return None if state is None else str(state)


def cluster_node_rows(
    session: UnitOfWork, clusters: Sequence[str]
) -> Sequence[Row[str, str, str, str, str, str, int, str]]:
    """(id, serial, hostname, cluster, supplier, SKU, GPUs per node, state) of every node of the named clusters, by
    id."""
    return session.execute(
        select(
            Node.id,
            Node.serial,
            Node.hostname,
            Cluster.name,
            Supplier.name,
            Sku.name,
            Sku.gpus_per_node,
            Node.state,
        )
        .join(Cluster, Cluster.id == Node.cluster_id)
        .join(Supplier, Supplier.id == Node.supplier_id)
        .join(Sku, Sku.id == Node.sku_id)
        .where(Cluster.name.in_(clusters))
        .order_by(Node.id)
    ).all()


def reference_names(session: UnitOfWork) -> dict[str, set[str]]:
    """Names already defined per reference section; NVLink domains as ``cluster/domain``."""
    return {
        "suppliers": set(session.execute(select(Supplier.name)).scalars()),
        "skus": set(session.execute(select(Sku.name)).scalars()),
        "clusters": set(session.execute(select(Cluster.name)).scalars()),
        "tenants": set(session.execute(select(Tenant.name)).scalars()),
        "nvlink_domains": {
            f"{c}/{n}"
            for c, n in session.execute(
                select(Cluster.name, NvlinkDomain.name).join(Cluster, Cluster.id == NvlinkDomain.cluster_id)
            )
        },
    }


def node_sizes(session: UnitOfWork) -> Sequence[Row[str, int, int, datetime]]:
    """(id, GPUs per node, cluster id, created_at) of every node."""
    return session.execute(
        select(Node.id, Sku.gpus_per_node, Node.cluster_id, Node.created_at).join(Sku, Sku.id == Node.sku_id)
    ).all()


def in_service_changes(
    session: UnitOfWork, end: datetime, in_service: str
) -> Sequence[Row[str, datetime, str | None, str | None]]:
    """(node_id, at, from_state, to_state) of every creation or transition up to ``end`` that entered or left
    ``in_service``, by node then in order."""
    return session.execute(
        select(NodeEvent.node_id, NodeEvent.at, NodeEvent.from_state, NodeEvent.to_state)
        .where(
            NodeEvent.kind.in_(("created", "transition")),
            NodeEvent.at <= end,
            or_(NodeEvent.from_state == in_service, NodeEvent.to_state == in_service),
        )
        .order_by(NodeEvent.node_id, NodeEvent.id)
    ).all()


def all_node_states(session: UnitOfWork) -> Sequence[Row[str, str]]:
    """(id, state) of every node."""
    return session.execute(select(Node.id, Node.state)).all()


def transitions(session: UnitOfWork, event: str) -> Sequence[Row[str, datetime, dict[str, Any]]]:
    """(node_id, at, data) of every recorded transition of one kind, in order."""
    return session.execute(
        select(NodeEvent.node_id, NodeEvent.at, NodeEvent.data)
        .where(NodeEvent.kind == "transition", NodeEvent.event == event)
        .order_by(NodeEvent.id)
    ).all()
