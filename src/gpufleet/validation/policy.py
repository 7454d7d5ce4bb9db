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

from gpufleet.adapters.db.models import ClusterValidationPolicy
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
    ValidationPolicy,
    change_policy,
    hardware_changed_since,
    last_healthy_in_cluster,
    select_path,
)
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound, ServiceError
from gpufleet.validation import store

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


def policies_by_cluster(session: UnitOfWork) -> dict[int, ValidationPolicy]:
    """Every stored policy; clusters missing here use the defaults."""
    return {row.cluster_id: policy_of(row) for row in store.policy_rows(session)}


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


def _cluster_id(session: UnitOfWork, name: str) -> int:
    cluster_id = store.cluster_id_named(session, name)
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
        return _view(cluster.strip(), store.policy_row(session, cluster_id))


def set_policy(
    db: Database, cluster: str, changes: dict[str, Any], actor: Actor, expected_version: int | None = None
) -> PolicyView:
    """Change some fields of a cluster's policy. Setting what is already set changes nothing (and says so)."""
    _writer(actor)
    if not changes:
        raise InvalidInput(f"name at least one policy field to change: {', '.join(POLICY_FIELDS)}")
    with db.transaction() as session:
        cluster_id = _cluster_id(session, cluster)
        row = store.locked_policy_row(session, cluster_id)
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
            row = store.add_policy(session, cluster_id, after.as_dict())
        for name, value in after.as_dict().items():
            setattr(row, name, value)
        row.version = current_version + 1
        row.updated_at = now
        row.updated_by = actor.name
        store.flush(session)
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


def _history(session: UnitOfWork, node_id: str) -> list[HistoryEvent]:
    rows = store.lifecycle_history(session, node_id)
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


def _canary(session: UnitOfWork, node_id: str, cluster_id: int, version: str | None) -> tuple[bool, str | None]:
    """Whether the cluster's configuration still needs a canary, and which other node is running it."""
    if version is None:
        return False, None
    if store.config_admitted(session, cluster_id, version):
        return False, None
    return True, store.canary_running_elsewhere(session, node_id, cluster_id, version)


def plan_for_node(session: UnitOfWork, node_id: str, now: datetime) -> ValidationPlan:
    """The path, suite and passes ``node_id`` should run now in its current cluster, inside the caller's session."""
    node = store.node_for_plan(session, node_id)
    if node is None:
        raise NotFound(f"no node with chassis id '{node_id}'")
    policy = policy_of(store.policy_row(session, node.cluster_id))
    events = _history(session, node_id)
    healthy = last_healthy_in_cluster(events, node.cluster_id, now)
    banned = False
    if healthy is not None:
        banned = store.banned_since(session, node_id, healthy)
    needed, elsewhere = _canary(session, node_id, node.cluster_id, policy.config_version)
    facts = NodeFacts(
        last_healthy=healthy,
        hardware_changed=healthy is not None and hardware_changed_since(events, healthy),
        banned_since_healthy=banned,
        canary_needed=needed,
        canary_elsewhere=elsewhere,
    )
    last = store.last_attempt(session, node_id)
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
