"""Bans: a node taken out of a cluster for failing in service, recorded as the fact re-ban rates count.

A ban of a node that is in service also quarantines it, in the same transaction, so the record and the lifecycle
never disagree. Banning a node that is already banned since its last admission changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpufleet.adapters.db.models import NodeBan
from gpufleet.domain.lifecycle import NodeState
from gpufleet.fleet.lifecycle import apply_transition, check_reason
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput
from gpufleet.validation import store

MAX_SOURCE = 100


@dataclass(frozen=True)
class BanResult:
    id: int
    node_id: str
    cluster: str
    at: datetime
    reason: str
    source: str
    created: bool
    quarantined: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node_id,
            "cluster": self.cluster,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "source": self.source,
            "created": self.created,
            "quarantined": self.quarantined,
        }


def _duplicate(session: UnitOfWork, node_id: str, cluster_id: int, state: str, at: datetime | None) -> NodeBan | None:
    """The ban this request repeats, if any. A backfill (explicit time) repeats a ban at the same time; a ban now
    repeats the latest one when the node has not been back in service or admitted since."""
    if at is not None:
        return store.ban_at(session, node_id, cluster_id, at)
    if state == NodeState.IN_SERVICE:
        return None
    latest = store.latest_ban(session, node_id, cluster_id)
    if latest is None:
        return None
    admitted = store.last_admission(session, node_id, cluster_id)
    return latest if admitted is None or latest.at > admitted else None


def ban_node(
    db: Database,
    node_ref: str,
    reason: str | None,
    actor: Actor,
    source: str = "operator",
    at: datetime | None = None,
) -> BanResult:
    """Ban a node in its current cluster, now (quarantining it when it is in service) or, to backfill history, at
    ``at``."""
    if actor.role < Role.OPERATOR:
        raise Forbidden("banning a node needs the operator role")
    if actor.tenant_scoped:
        raise Forbidden("a tenant-scoped token cannot ban a node")
    text = check_reason(reason)
    source = (source or "").strip()
    if not source or len(source) > MAX_SOURCE:
        raise InvalidInput(f"the source is 1 to {MAX_SOURCE} characters (who found the fault)", field="source")
    now = db.clock.now()
    when = at or now
    if when.tzinfo is None:
        raise InvalidInput("the ban time needs a time zone", field="at")
    if when > now:
        raise InvalidInput("a ban cannot be in the future", field="at")
    with db.transaction() as session:
        node_id = resolve_node_id(session, node_ref, actor, now)
        node = store.node_to_ban(session, node_id)
        existing = _duplicate(session, node_id, node.cluster_id, node.state, at)
        if existing is not None:
            return BanResult(
                existing.id, node_id, node.name, existing.at, existing.reason, existing.source, False, False
            )
        ban = store.add_ban(
            session,
            node_id=node_id,
            cluster_id=node.cluster_id,
            at=when,
            reason=text,
            source=source,
            actor=actor.name,
            correlation_id=actor.correlation_id,
            created_at=now,
        )
        quarantined = False
        if at is None and node.state == NodeState.IN_SERVICE:  # a backfilled ban records history only
            apply_transition(session, node_id, "quarantine", f"banned: {text}", actor, now, data={"ban_id": ban.id})
            quarantined = True
        return BanResult(ban.id, node_id, node.name, when, text, source, True, quarantined)


def record_ban(session: UnitOfWork, node_id: str, at: datetime, reason: str, source: str, actor: Actor) -> int:
    """Record a ban of ``node_id`` in its current cluster inside the caller's transaction, and nothing else.

    For automation (the simulator, a health controller) that takes the node out of service itself, in the same unit
    of work. The caller has checked its own right to act.
    """
    cluster_id = store.cluster_of_node(session, node_id)
    ban = store.add_ban(
        session,
        node_id=node_id,
        cluster_id=cluster_id,
        at=at,
        reason=reason[:2000],
        source=source[:MAX_SOURCE],
        actor=actor.name,
        correlation_id=actor.correlation_id,
        created_at=at,
    )
    return ban.id


def list_bans(db: Database, actor: Actor, node: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The latest bans, newest first, optionally of one node."""
    if actor.tenant_scoped:
        raise Forbidden("bans are fleet data; a tenant-scoped token cannot read them")
    now = db.clock.now()
    with db.reader() as session:
        node_id = resolve_node_id(session, node, actor, now) if node is not None else None
        return [
            {
                "id": ban.id,
                "node": ban.node_id,
                "cluster": cluster,
                "at": ban.at.isoformat(),
                "reason": ban.reason,
                "source": ban.source,
                "actor": ban.actor,
            }
            for ban, cluster in store.latest_bans(session, max(1, min(limit, 10_000)), node_id)
        ]
