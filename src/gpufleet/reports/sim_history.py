"""What the fleet simulator reads back from the source of truth: node states, and availability from the event log.

Availability is computed from the append-only events, not from the simulator's own tallies, so a simulation reports
what the product recorded: GPU-hours spent in ``in_service`` over GPU-hours the fleet held in the window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from gpufleet.domain.lifecycle import NodeState
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.reports import store

IN_SERVICE = NodeState.IN_SERVICE.value


def node_count(db: Database) -> int:
    with db.reader() as session:
        return store.node_count(session)


def node_states(db: Database, ids: Iterable[str]) -> dict[str, str]:
    """Current state of each listed node that exists; missing ids are left out."""
    wanted = list(ids)
    with db.reader() as session:
        return store.node_states(session, wanted)


def node_state(session: UnitOfWork, node_id: str) -> str | None:
    return store.node_state(session, node_id)


@dataclass(frozen=True)
class StoredNode:
    id: str
    serial: str
    hostname: str
    cluster: str
    supplier: str
    sku: str
    gpus: int
    state: str


def cluster_nodes(db: Database, clusters: Iterable[str]) -> list[StoredNode]:
    """Every node of the named clusters, so a live simulation can take over nodes it did not create."""
    names = list(clusters)
    with db.reader() as session:
        return [StoredNode(*row) for row in store.cluster_node_rows(session, names)]


def reference_names(db: Database) -> dict[str, set[str]]:
    """Names already defined per reference section, so a live simulation adds only what is missing."""
    with db.reader() as session:
        return store.reference_names(session)


@dataclass
class Availability:
    in_service_gpu_hours: float = 0.0
    total_gpu_hours: float = 0.0
    by_cluster: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Cluster -> (GPU-hours in service, GPU-hours held)."""

    @property
    def ratio(self) -> float:
        return self.in_service_gpu_hours / self.total_gpu_hours if self.total_gpu_hours else 0.0


def availability(db: Database, start: datetime, end: datetime, node_ids: Iterable[str] | None = None) -> Availability:
    """GPU-hours in service over GPU-hours held between ``start`` and ``end``, folded from the event log."""
    only = set(node_ids) if node_ids is not None else None
    result = Availability()
    with db.reader() as session:
        clusters = store.cluster_names_by_id(session)
        nodes: dict[str, tuple[int, str, datetime]] = {}
        for node_id, gpus, cluster_id, created in store.node_sizes(session):
            if only is None or node_id in only:
                nodes[node_id] = (int(gpus), clusters[cluster_id], created)
        events = store.in_service_changes(session, end, IN_SERVICE)
        in_service: dict[str, float] = {}
        since: dict[str, datetime] = {}
        for node_id, at, from_state, to_state in events:
            if node_id not in nodes:
                continue
            if to_state == IN_SERVICE and from_state != IN_SERVICE:
                since[node_id] = at
            elif from_state == IN_SERVICE and to_state != IN_SERVICE and node_id in since:
                began = max(since.pop(node_id), start)
                if at > began:
                    in_service[node_id] = in_service.get(node_id, 0.0) + (at - began).total_seconds()
        for node_id, began_at in since.items():
            began = max(began_at, start)
            if end > began:
                in_service[node_id] = in_service.get(node_id, 0.0) + (end - began).total_seconds()
    for node_id, (gpus, cluster, created) in nodes.items():
        held = max(0.0, (end - max(created, start)).total_seconds()) * gpus / 3600.0
        served = in_service.get(node_id, 0.0) * gpus / 3600.0
        result.in_service_gpu_hours += served
        result.total_gpu_hours += held
        a, b = result.by_cluster.get(cluster, (0.0, 0.0))
        result.by_cluster[cluster] = (a + served, b + held)
    return result


def state_counts(db: Database, node_ids: Iterable[str] | None = None) -> dict[str, int]:
    """Nodes per lifecycle state, to check what the simulator believes against what is stored."""
    only = set(node_ids) if node_ids is not None else None
    counts: dict[str, int] = {}
    with db.reader() as session:
        for node_id, state in store.all_node_states(session):
            if only is None or node_id in only:
                counts[state] = counts.get(state, 0) + 1
    return counts


def transition_events(db: Database, event: str) -> list[dict[str, object]]:
    """Every recorded transition of one kind with its data, e.g. each quarantine and the fault that caused it."""
    with db.reader() as session:
        rows = store.transitions(session, event)
        return [{"node_id": n, "at": at, "data": dict(data or {})} for n, at, data in rows]
