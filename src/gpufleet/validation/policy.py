"""Per-cluster validation policies, per-SKU pass criteria, and the path a node should take now.

The domain decides; this module gathers what it decides on: the cluster's stored policy (or the defaults), the
node's lifecycle history in that cluster, its bans, and whether the cluster's current configuration has a canary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import (
    Cluster,
    ClusterValidationPolicy,
    Node,
    NodeBan,
    NodeEvent,
    Sku,
    ValidationAttempt,
)
from gpufleet.domain.lifecycle import NodeState
from gpufleet.domain.validation import (
    CHECKS,
    HARDWARE_EVENTS,
    POLICY_FIELDS,
    CheckKind,
    Criteria,
    HistoryEvent,
    NodeFacts,
    PathDecision,
    PolicyError,
    ValidationPath,
    ValidationPolicy,
    change_policy,
    hardware_changed_since,
    last_healthy_in_cluster,
    select_path,
)
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound, ServiceError

THRESHOLDS_FILE = "validation_thresholds.yaml"


# ---------------------------------------------------------------------------------------------------------------
# Pass criteria.


@lru_cache(maxsize=1)
def load_criteria() -> dict[str, Criteria]:
    """The per-GPU-model floors shipped with gpufleet, keyed by lower-cased model name."""
    text = resources.files("gpufleet.validation").joinpath(THRESHOLDS_FILE).read_text(encoding="utf-8")
    document = yaml.safe_load(text) or {}
    out: dict[str, Criteria] = {}
    for model, values in (document.get("models") or {}).items():
        minimums: dict[str, float] = {}
        for name, value in values.items():
            if name == "source":
                continue
            check = CHECKS.get(name)
            if check is None or check.kind is not CheckKind.MINIMUM:
                raise ValueError(f"{THRESHOLDS_FILE}: model {model}: '{name}' is not a measured check")
            minimums[name] = float(value)
        out[str(model).lower()] = Criteria(str(model), minimums, str(values.get("source", "")))
    return out


def criteria_for(gpu_model: str | None) -> Criteria | None:
    return load_criteria().get((gpu_model or "").lower())


# ---------------------------------------------------------------------------------------------------------------
# Policies.


def policy_of(row: ClusterValidationPolicy | None) -> ValidationPolicy:
    if row is None:
        return ValidationPolicy()
    return ValidationPolicy(**{name: getattr(row, name) for name in POLICY_FIELDS})


def policies_by_cluster(session: Session) -> dict[int, ValidationPolicy]:
    """Every stored policy; clusters missing here use the defaults."""
    return {row.cluster_id: policy_of(row) for row in session.scalars(select(ClusterValidationPolicy))}


@dataclass(frozen=True)
class PolicyView:
    cluster: str
    policy: ValidationPolicy
    is_default: bool
    version: int
    updated_at: datetime | None
    updated_by: str | None
    changed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            **self.policy.as_dict(),
            "is_default": self.is_default,
            "version": self.version,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "updated_by": self.updated_by,
            "changed": self.changed,
        }


def _reader(actor: Actor) -> None:
    if actor.tenant_scoped:
        raise Forbidden("validation policies and history are fleet data; a tenant-scoped token cannot read them")


def _writer(actor: Actor) -> None:
    if actor.role < Role.OPERATOR:
        raise Forbidden("changing validation needs the operator role")
    if actor.tenant_scoped:
        raise Forbidden("a tenant-scoped token cannot change validation")


def _cluster_id(session: Session, name: str) -> int:
    cluster_id = session.execute(select(Cluster.id).where(Cluster.name == name.strip())).scalar_one_or_none()
    if cluster_id is None:
        raise NotFound(f"no cluster named '{name}'")
    return cluster_id


def _view(name: str, row: ClusterValidationPolicy | None, changed: bool = False) -> PolicyView:
    if row is None:
        return PolicyView(name, ValidationPolicy(), True, 0, None, None, changed)
    return PolicyView(name, policy_of(row), False, row.version, row.updated_at, row.updated_by, changed)


def show_policy(db: Database, cluster: str, actor: Actor) -> PolicyView:
    _reader(actor)
    with db.reader() as session:
        cluster_id = _cluster_id(session, cluster)
        return _view(cluster.strip(), session.get(ClusterValidationPolicy, cluster_id))


def set_policy(
    db: Database, cluster: str, changes: dict[str, Any], actor: Actor, expected_version: int | None = None
) -> PolicyView:
    """Change some fields of a cluster's policy. Setting what is already set changes nothing (and says so)."""
    _writer(actor)
    if not changes:
        raise InvalidInput(f"name at least one policy field to change: {', '.join(POLICY_FIELDS)}")
    with db.transaction() as session:
        cluster_id = _cluster_id(session, cluster)
        row = session.get(ClusterValidationPolicy, cluster_id, with_for_update=True)
        current_version = row.version if row is not None else 0
        if expected_version is not None and expected_version != current_version:
            raise PolicyConflict(cluster, expected_version, current_version)
        before = policy_of(row)
        try:
            after = change_policy(before, changes)
        except PolicyError as exc:
            raise InvalidInput(str(exc).split(": ", 1)[1], field=exc.field) from None
        if after == before and row is not None:
            return _view(cluster.strip(), row)
        now = db.clock.now()
        if row is None:
            row = ClusterValidationPolicy(cluster_id=cluster_id, version=0, **after.as_dict())
            session.add(row)
        for name, value in after.as_dict().items():
            setattr(row, name, value)
        row.version = current_version + 1
        row.updated_at = now
        row.updated_by = actor.name
        session.flush()
        return _view(cluster.strip(), row, changed=True)


class PolicyConflict(ServiceError):
    status = 412
    title = "Precondition failed"

    def __init__(self, cluster: str, expected: int, actual: int) -> None:
        super().__init__(f"the policy of {cluster} is at version {actual}, not {expected}; re-read it and retry")


# ---------------------------------------------------------------------------------------------------------------
# The path a node takes now.


@dataclass(frozen=True)
class ValidationPlan:
    node_id: str
    cluster: str
    gpu_model: str
    attempt: int
    """The attempt number the next attempt should carry."""
    decision: PathDecision
    config_version: str | None
    criteria: Criteria | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "cluster": self.cluster,
            "gpu_model": self.gpu_model,
            "attempt": self.attempt,
            **self.decision.as_dict(),
            "config_version": self.config_version,
            "criteria": dict(self.criteria.minimums) if self.criteria else {},
        }


def _history(session: Session, node_id: str) -> list[HistoryEvent]:
    rows = session.execute(
        select(
            NodeEvent.at,
            NodeEvent.kind,
            NodeEvent.event,
            NodeEvent.from_state,
            NodeEvent.to_state,
            NodeEvent.cluster_id,
            NodeEvent.data,
        )
        .where(NodeEvent.node_id == node_id, NodeEvent.kind.in_(("transition", "updated", "moved")))
        .order_by(NodeEvent.id)
    )
    return [
        HistoryEvent(
            r.at,
            r.kind,
            _as_seen(r.event, r.data or {}),
            r.from_state,
            r.to_state,
            r.cluster_id,
            gpus_changed="gpu_serials" in ((r.data or {}).get("changes") or {}),
        )
        for r in rows
    ]


def _as_seen(event: str | None, data: dict[str, Any]) -> str | None:
    """An event as path selection should read it, from what remediation recorded on it.

    A node quarantined by remediation served healthily in the cluster until that moment (``left_healthy``), so for
    the fast track its stay ended like a planned exit; and a repair that changed no hardware (``hardware_change``
    false: an application restart, a GPU reset, a reboot or a reimage) is no hardware change. Anything else
    (a repair by hands, a supplier's return, a GPU swap) still sends the node down the slow path.
    """
    if event == "quarantine" and data.get("left_healthy") is True:
        return "drain"
    if event in HARDWARE_EVENTS and data.get("hardware_change") is False:
        return f"{event}:software"
    return event


def _canary(session: Session, node_id: str, cluster_id: int, version: str | None) -> tuple[bool, str | None]:
    """Whether the cluster's configuration still needs a canary, and which other node is running it."""
    if version is None:
        return False, None
    attempts = select(ValidationAttempt.id).where(
        ValidationAttempt.cluster_id == cluster_id, ValidationAttempt.config_version == version
    )
    if session.execute(attempts.where(ValidationAttempt.status == "passed").limit(1)).first() is not None:
        return False, None
    running = session.execute(
        select(ValidationAttempt.node_id)
        .join(Node, Node.id == ValidationAttempt.node_id)
        .where(
            ValidationAttempt.cluster_id == cluster_id,
            ValidationAttempt.config_version == version,
            ValidationAttempt.path == ValidationPath.CANARY.value,
            ValidationAttempt.status == "in_progress",
            ValidationAttempt.node_id != node_id,
            Node.state == NodeState.VALIDATING.value,  # an abandoned canary must not hold the cluster forever
        )
        .order_by(ValidationAttempt.started_at)
        .limit(1)
    ).scalar_one_or_none()
    return True, running


def plan_for_node(session: Session, node_id: str, now: datetime) -> ValidationPlan:
    """The path, suite and passes ``node_id`` should run now in its current cluster, inside the caller's session."""
    node = session.execute(
        select(Node.cluster_id, Cluster.name, Sku.gpu_model)
        .join(Cluster, Cluster.id == Node.cluster_id)
        .join(Sku, Sku.id == Node.sku_id)
        .where(Node.id == node_id)
    ).one_or_none()
    if node is None:
        raise NotFound(f"no node with chassis id '{node_id}'")
    policy = policy_of(session.get(ClusterValidationPolicy, node.cluster_id))
    events = _history(session, node_id)
    healthy = last_healthy_in_cluster(events, node.cluster_id, now)
    banned = False
    if healthy is not None:
        banned = (
            session.execute(select(NodeBan.id).where(NodeBan.node_id == node_id, NodeBan.at > healthy).limit(1)).first()
            is not None
        )
    needed, elsewhere = _canary(session, node_id, node.cluster_id, policy.config_version)
    facts = NodeFacts(
        last_healthy=healthy,
        hardware_changed=healthy is not None and hardware_changed_since(events, healthy),
        banned_since_healthy=banned,
        canary_needed=needed,
        canary_elsewhere=elsewhere,
    )
    last = session.execute(
        select(func.max(ValidationAttempt.attempt)).where(ValidationAttempt.node_id == node_id)
    ).scalar_one()
    return ValidationPlan(
        node_id=node_id,
        cluster=node.name,
        gpu_model=node.gpu_model,
        attempt=(last or 0) + 1,
        decision=select_path(policy, facts, now),
        config_version=policy.config_version,
        criteria=criteria_for(node.gpu_model),
    )


def plan_validation(db: Database, node_ref: str, actor: Actor) -> ValidationPlan:
    _reader(actor)
    now = db.clock.now()
    with db.reader() as session:
        return plan_for_node(session, resolve_node_id(session, node_ref, actor, now), now)
