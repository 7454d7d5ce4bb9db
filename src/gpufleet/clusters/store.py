"""Every SQL statement of the clusters capability: driver settings, the per-cluster sync lock, nodes and events.

The use cases (``drivers``, ``sync``) decide; they hand their open session to the functions here, which read and
write the tables and choose the SQL of each database.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, text, update
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import Cluster, Node, NodeEvent, RemediationOverride
from gpufleet.platform.database import Database

# ---------------------------------------------------------------------------------------------------------------
# Clusters and their drivers.


def cluster_driver(session: Session, cluster: str) -> Row[str, str, str, dict[str, Any]] | None:
    """The cluster's name, kind, driver and driver settings."""
    return session.execute(
        select(Cluster.name, Cluster.kind, Cluster.driver, Cluster.driver_config).where(Cluster.name == cluster)
    ).one_or_none()


def set_driver(session: Session, cluster: str, driver: str, config: Mapping[str, Any]) -> int:
    """Store the cluster's driver and settings; how many clusters matched (0 or 1)."""
    found: int = session.execute(
        update(Cluster).where(Cluster.name == cluster).values(driver=driver, driver_config=config)
    ).rowcount  # type: ignore[attr-defined]
    return found


def setting_overrides(session: Session, cluster: str) -> list[tuple[str, Any]]:
    """The (key, value) of every setting override in force for the cluster as a whole: the fleet's first, then the
    cluster's own, each oldest first, the order the policy applies them in. Pool overrides name a part of the
    cluster and are left to remediation, which acts per node."""
    rows = session.execute(
        select(RemediationOverride.key, RemediationOverride.value)
        .where(
            RemediationOverride.revoked_at.is_(None),
            RemediationOverride.pool.is_(None),
            RemediationOverride.key.startswith("setting:"),
            RemediationOverride.cluster_id.is_(None)
            | RemediationOverride.cluster_id.in_(select(Cluster.id).where(Cluster.name == cluster)),
        )
        .order_by(RemediationOverride.cluster_id.is_not(None), RemediationOverride.id)
    ).all()
    return [(key, value) for key, value in rows]


def synced_cluster_names(session: Session) -> list[str]:
    """Clusters with a real driver (not simulated) and not decommissioned, by name."""
    return list(
        session.execute(
            select(Cluster.name)
            .where(Cluster.driver.in_(("slurm", "kubernetes")), Cluster.status != "decommissioned")
            .order_by(Cluster.name)
        ).scalars()
    )


# ---------------------------------------------------------------------------------------------------------------
# One sync per cluster at a time.


@contextmanager
def cluster_lock(db: Database, cluster: str) -> Iterator[bool]:
    """One sync per cluster at a time across processes (PostgreSQL advisory lock); SQLite needs none."""
    if db.dialect != "postgresql":
        yield True
        return
    key = zlib.crc32(f"gpufleet-sync:{cluster}".encode())
    with db.engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


# ---------------------------------------------------------------------------------------------------------------
# Nodes.


def cluster_nodes(session: Session, cluster: str) -> Sequence[Row[str, str, str, datetime, int]]:
    """(id, hostname, state, state_since, cluster_id) of every node of the cluster, by hostname."""
    return session.execute(
        select(Node.id, Node.hostname, Node.state, Node.state_since, Node.cluster_id)
        .join(Cluster, Cluster.id == Node.cluster_id)
        .where(Cluster.name == cluster)
        .order_by(Node.hostname)
    ).all()


def node_with_cluster(session: Session, node_id: str) -> Row[str, str, datetime, int, str]:
    """The node's hostname, state, state_since, cluster_id and its cluster's name."""
    return session.execute(
        select(Node.hostname, Node.state, Node.state_since, Node.cluster_id, Cluster.name)
        .join(Cluster, Cluster.id == Node.cluster_id)
        .where(Node.id == node_id)
    ).one()


def lock_node(session: Session, node_id: str) -> None:
    """Lock the node's row until the transaction ends (SQLite's one writer already serializes)."""
    session.execute(select(Node.id).where(Node.id == node_id).with_for_update())


def locked_state(session: Session, node_id: str) -> str:
    """The node's state, its row locked until the transaction ends."""
    return session.execute(select(Node.state).where(Node.id == node_id).with_for_update()).scalar_one()


# ---------------------------------------------------------------------------------------------------------------
# Node events: what the scheduler said, what the driver did, what failed.


def add_events(session: Session, rows: list[dict[str, Any]]) -> None:
    session.execute(insert(NodeEvent), rows)


def latest_event(session: Session, node_id: str, kinds: tuple[str, ...], event: str | None = None) -> NodeEvent | None:
    query = select(NodeEvent).where(NodeEvent.node_id == node_id, NodeEvent.kind.in_(kinds))
    if event is not None:
        query = query.where(NodeEvent.event == event)
    return session.execute(query.order_by(NodeEvent.id.desc()).limit(1)).scalar_one_or_none()


def reboot_outcomes_after(session: Session, node_id: str, after_id: int) -> int:
    """How many reboot outcomes (returned or failed) were recorded for the node after event ``after_id``."""
    return session.execute(
        select(func.count())
        .select_from(NodeEvent)
        .where(
            NodeEvent.node_id == node_id,
            NodeEvent.id > after_id,
            NodeEvent.event.in_(("reboot_returned", "reboot_failed")),
        )
    ).scalar_one()


def event_kinds_after(
    session: Session, node_id: str, after_id: int, event: str, kinds: tuple[str, ...]
) -> Sequence[str]:
    """The kinds (among ``kinds``) of the node's ``event`` events recorded after event ``after_id``."""
    return (
        session.execute(
            select(NodeEvent.kind).where(
                NodeEvent.node_id == node_id,
                NodeEvent.id > after_id,
                NodeEvent.event == event,
                NodeEvent.kind.in_(kinds),
            )
        )
        .scalars()
        .all()
    )


def last_transition(session: Session, node_id: str) -> Row[int, str | None, dict[str, Any]] | None:
    """The id, reason and data of the node's latest lifecycle transition."""
    return session.execute(
        select(NodeEvent.id, NodeEvent.reason, NodeEvent.data)
        .where(NodeEvent.node_id == node_id, NodeEvent.kind == "transition")
        .order_by(NodeEvent.id.desc())
        .limit(1)
    ).one_or_none()
