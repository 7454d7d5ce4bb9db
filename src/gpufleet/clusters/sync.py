"""Two-way reconcile between gpufleet and a cluster's scheduler.

From the scheduler into gpufleet: what the scheduler says about a node (its state, a drain reason and who set it, a
reboot that came back or did not) is recorded as an ``observed`` event whenever it changes, so a hand-made drain in
Slurm shows up in the node's history with Slurm's reason and user. The latest observed event is the cursor: nothing
is written while nothing changes.

From gpufleet into the scheduler: a node gpufleet holds (quarantined, draining, in repair, in maintenance, ...) is
kept out of service in the scheduler with a reason naming gpufleet's event; a node in service that gpufleet itself
held is returned. A hold someone else put on a node is never lifted here: only ``resume_in_scheduler`` with an
explicit override and a reason does that. A DRAINING node becomes DRAINED only when the scheduler reports no work.

A driver call that fails changes nothing in gpufleet: the failure is recorded (``driver_failed``), the next run
tries again, and after a few failures (or at once, when retrying cannot help) the node is ``escalated``.
Several processes may sync the same cluster: on PostgreSQL an advisory lock lets one run at a time, and on both
databases each node's check-then-write happens inside one write transaction (a row lock on PostgreSQL, SQLite's
single writer), so an observation is never recorded twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from gpufleet.adapters.drivers.base import MAINTENANCE_TAINT, DriverError, NodeStatus
from gpufleet.adapters.drivers.ownership import HeldByOthers, tag_reason
from gpufleet.clusters import store
from gpufleet.clusters.drivers import DriverRegistry, cluster_target, default_registry
from gpufleet.clusters.scheduler import Scheduler
from gpufleet.domain.lifecycle import HELD_STATES, NodeState
from gpufleet.domain.settings import Settings
from gpufleet.domain.xid_policy import overridden_settings
from gpufleet.fleet.lifecycle import apply_transition, check_reason
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.platform.context import SYSTEM, Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput, ServiceError

OBSERVED = "observed"
ACTION = "driver_action"
FAILED = "driver_failed"
ESCALATED = "escalated"
_FINGERPRINT = ("native_state", "reason", "owner", "reason_user", "reachable", "reboot_pending")


class DriverUnavailable(ServiceError):
    """The cluster's scheduler could not be reached or refused; nothing was changed in gpufleet."""

    status = 502
    title = "Cluster driver failed"


class HeldOutside(ServiceError):
    """The node is out of service in the scheduler by someone else's hand; lifting that needs an override."""

    status = 409
    title = "Held outside gpufleet"


@runtime_checkable
class Checks(Protocol):
    def check(self) -> dict[str, Any]: ...


@dataclass
class SyncReport:
    cluster: str
    driver: str
    at: datetime
    reachable: bool = True
    error: str | None = None
    skipped: bool = False
    nodes: int = 0
    observed: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    escalated: list[dict[str, Any]] = field(default_factory=list)
    held_outside: list[dict[str, Any]] = field(default_factory=list)
    unknown_to_gpufleet: list[str] = field(default_factory=list)
    missing_in_cluster: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "driver": self.driver,
            "at": self.at.isoformat(),
            "reachable": self.reachable,
            "error": self.error,
            "skipped": self.skipped,
            "nodes": self.nodes,
            "observed": self.observed,
            "actions": self.actions,
            "transitions": self.transitions,
            "failures": self.failures,
            "escalated": self.escalated,
            "held_outside": self.held_outside,
            "unknown_to_gpufleet": self.unknown_to_gpufleet,
            "missing_in_cluster": self.missing_in_cluster,
        }


@dataclass(frozen=True)
class _Node:
    id: str
    hostname: str
    state: NodeState
    state_since: datetime
    cluster_id: int


def _fingerprint(status: NodeStatus) -> dict[str, Any]:
    return {
        "native_state": status.native_state,
        "reason": status.reason,
        "owner": status.extra.get("owner", ""),
        "reason_user": status.extra.get("reason_user"),
        "reachable": status.power.reachable,
        "reboot_pending": status.power.reboot_pending,
    }


def _observation(status: NodeStatus) -> dict[str, Any]:
    data = _fingerprint(status)
    data.update(
        schedulable=status.schedulable,
        draining=status.draining,
        running=[w.id for w in status.running][:50],
        booted_at=status.power.booted_at.isoformat() if status.power.booted_at else None,
        taints=[t.key for t in status.taints],
        extra=dict(status.extra),
    )
    return data


def _what_changed(before: dict[str, Any] | None, now: NodeStatus) -> str:
    owner = now.extra.get("owner", "")
    if not now.power.reachable and (before is None or before.get("reachable", True)):
        return "unreachable"
    if not now.schedulable and owner == "other" and (before is None or before.get("owner") != "other"):
        return "held_outside"
    if before is not None and before.get("owner") == "other" and owner != "other":
        return "released_outside"
    return "changed"


def _event_row(
    node: _Node,
    kind: str,
    event: str | None,
    actor: str,
    reason: str | None,
    data: dict[str, Any],
    correlation_id: str,
    now: datetime,
) -> dict[str, Any]:
    return {
        "node_id": node.id,
        "at": now,
        "kind": kind,
        "event": event,
        "from_state": node.state.value,
        "to_state": node.state.value,
        "actor": actor[:200],
        "reason": reason,
        "correlation_id": correlation_id,
        "cluster_id": node.cluster_id,
        "data": data,
    }


class _Sync:
    def __init__(
        self, db: Database, scheduler: Scheduler, report: SyncReport, settings: Settings, actor: Actor
    ) -> None:
        self.db = db
        self.scheduler = scheduler
        self.report = report
        self.settings = settings
        self.reboot_timeout = timedelta(minutes=settings.reboot_timeout_minutes)
        self.drain_deadline = timedelta(minutes=settings.drain_deadline_minutes)
        self.actor = actor
        self.now = db.clock.now()
        self.source = f"{report.driver}:{report.cluster}"

    def write(self, node: _Node, rows: list[dict[str, Any]], lock: bool = True) -> None:
        if not rows:
            return
        with self.db.transaction() as session:
            if lock:
                store.lock_node(session, node.id)
            store.add_events(session, rows)

    def observe(self, node: _Node, status: NodeStatus) -> None:
        """Record what the scheduler says when it differs from what was last recorded; inside one transaction."""
        with self.db.transaction() as session:
            store.lock_node(session, node.id)
            last = store.latest_event(session, node.id, (OBSERVED,))
            before = last.data if last is not None else None
            seen = _observation(status)
            if before is not None and all(before.get(k) == seen.get(k) for k in _FINGERPRINT):
                self._track_reboot(session, node, status)
                return
            what = _what_changed(before, status)
            user = status.extra.get("reason_user")
            actor = f"{self.source}:{user}" if user else self.source
            reason = status.reason or f"scheduler reports {status.native_state}"
            store.add_events(
                session, [_event_row(node, OBSERVED, what, actor, reason, seen, self.actor.correlation_id, self.now)]
            )
            self.report.observed.append(
                {
                    "node": node.hostname,
                    "event": what,
                    "native_state": status.native_state,
                    "reason": status.reason,
                    "user": user,
                }
            )
            self._track_reboot(session, node, status)

    def _track_reboot(self, session: UnitOfWork, node: _Node, status: NodeStatus) -> None:
        asked = store.latest_event(session, node.id, (ACTION,), "reboot")
        if asked is None:
            return
        done = store.reboot_outcomes_after(session, node.id, asked.id)
        if done:
            return
        booted = status.power.booted_at
        before = asked.data.get("booted_at")
        came_back = not status.power.reboot_pending and status.power.reachable
        if came_back and (before is None or (booted is not None and booted.isoformat() > before)):
            seconds = (self.now - asked.at).total_seconds()
            row = _event_row(
                node,
                OBSERVED,
                "reboot_returned",
                self.source,
                f"back after {seconds:.0f} s",
                {"seconds": seconds, "booted_at": booted.isoformat() if booted else None},
                self.actor.correlation_id,
                self.now,
            )
            store.add_events(session, [row])
            self.report.observed.append({"node": node.hostname, "event": "reboot_returned", "seconds": seconds})
            return
        timed_out = status.extra.get("reboot_timed_out") == "true"
        if timed_out or self.now - asked.at > self.reboot_timeout:
            why = "the scheduler gave up waiting" if timed_out else f"not back within {self.reboot_timeout}"
            data = {"asked_at": asked.at.isoformat(), "native_state": status.native_state}
            rows = [
                _event_row(
                    node,
                    OBSERVED,
                    "reboot_failed",
                    self.source,
                    f"reboot did not return: {why}",
                    data,
                    self.actor.correlation_id,
                    self.now,
                ),
                _event_row(
                    node,
                    ESCALATED,
                    "reboot_failed",
                    self.actor.name,
                    f"node did not return from its reboot ({why}); hardware check or supplier needed",
                    data,
                    self.actor.correlation_id,
                    self.now,
                ),
            ]
            store.add_events(session, rows)
            self.report.observed.append({"node": node.hostname, "event": "reboot_failed"})
            self.report.escalated.append({"node": node.hostname, "action": "reboot", "why": why})

    def act(self, node: _Node, action: str, reason: str, call: Any) -> Any:
        """Run one driver action; record it, or record the failure and escalate when retrying will not help."""
        try:
            result = call()
        except DriverError as exc:
            self._failed(node, action, exc)
            return None
        data = {"driver": self.report.driver}
        self.write(
            node, [_event_row(node, ACTION, action, self.actor.name, reason, data, self.actor.correlation_id, self.now)]
        )
        self.report.actions.append({"node": node.hostname, "action": action, "reason": reason})
        return result

    def _failed(self, node: _Node, action: str, exc: DriverError) -> None:
        with self.db.transaction() as session:
            store.lock_node(session, node.id)
            last_ok = store.latest_event(session, node.id, (ACTION,), action)
            since = last_ok.id if last_ok is not None else 0
            earlier = store.event_kinds_after(session, node.id, since, action, (FAILED, ESCALATED))
            if ESCALATED in earlier:
                self.report.failures.append({"node": node.hostname, "action": action, "error": str(exc)})
                return  # already escalated: keep trying quietly until it works
            attempts = earlier.count(FAILED) + 1
            data = {"attempt": attempts, "retryable": exc.retryable, "error": str(exc)[:500]}
            rows = [
                _event_row(
                    node, FAILED, action, self.actor.name, str(exc)[:2000], data, self.actor.correlation_id, self.now
                )
            ]
            if not exc.retryable or attempts >= self.settings.escalate_after_failures:
                rows.append(
                    _event_row(
                        node,
                        ESCALATED,
                        action,
                        self.actor.name,
                        f"{action} failed {attempts} time(s) on the cluster; last error: {exc}"[:2000],
                        data,
                        self.actor.correlation_id,
                        self.now,
                    )
                )
                self.report.escalated.append({"node": node.hostname, "action": action, "error": str(exc)})
            store.add_events(session, rows)
        self.report.failures.append({"node": node.hostname, "action": action, "error": str(exc), "attempt": attempts})

    def hold_reason(self, node: _Node) -> str:
        """A reason naming what gpufleet holds the node for: its case or maintenance, else its lifecycle event."""
        with self.db.reader() as session:
            last = store.last_transition(session, node.id)
        if last is None:
            return tag_reason(node.state.value)
        data = last.data or {}
        keys = ("case_id", "maintenance_id")
        ref = next((f"{k.removesuffix('_id')}:{data[k]}" for k in keys if data.get(k)), f"event:{last.id}")
        return tag_reason(f"{node.state.value}" + (f": {last.reason}" if last.reason else ""), ref)

    def reconcile(self, node: _Node, status: NodeStatus) -> None:
        owner = status.extra.get("owner", "")
        if owner == "other" and not status.schedulable:
            self.report.held_outside.append(
                {
                    "node": node.hostname,
                    "reason": status.reason,
                    "user": status.extra.get("reason_user"),
                    "state": node.state.value,
                }
            )
        if node.state is NodeState.IN_SERVICE:
            if (
                not status.schedulable
                and owner == "gpufleet"
                and not status.power.reboot_pending
                and status.power.reachable
            ):
                self.act(
                    node,
                    "uncordon",
                    "gpufleet holds the node in service",
                    lambda: self.scheduler.uncordon(node.hostname, "in service"),
                )
            return
        if node.state not in HELD_STATES:
            return
        reason = self.hold_reason(node)
        if node.state is NodeState.DRAINING:
            deadline = node.state_since + self.drain_deadline
            drained = self.act_quiet(
                node, "drain", reason, lambda: self.scheduler.drain(node.hostname, reason, deadline)
            )
            if drained is not None and drained.complete:
                self.transition(node, "drained", f"the scheduler reports no work left on {node.hostname}")
        elif status.schedulable:
            self.act(node, "cordon", reason, lambda: self.scheduler.cordon(node.hostname, reason))
        has_taint = any(t.key == MAINTENANCE_TAINT for t in status.taints)
        if node.state is NodeState.MAINTENANCE and not has_taint:
            self.act(
                node,
                "set_maintenance_taint",
                reason,
                lambda: self.scheduler.set_maintenance_taint(node.hostname, reason),
            )

    def act_quiet(self, node: _Node, action: str, reason: str, call: Any) -> Any:
        """An action repeated on every run while it lasts (a drain): recorded only when it fails."""
        try:
            return call()
        except DriverError as exc:
            self._failed(node, action, exc)
            return None

    def transition(self, node: _Node, event: str, reason: str) -> None:
        with self.db.transaction() as session:
            current = store.locked_state(session, node.id)
            if current != node.state.value:
                return  # someone moved it meanwhile; the next run looks again
            result = apply_transition(
                session, node.id, event, reason, self.actor, self.now, data={"source": self.source}
            )
        self.report.transitions.append({"node": node.hostname, "event": event, "to": result.to_state})


def _nodes(db: Database, cluster: str) -> list[_Node]:
    with db.reader() as session:
        rows = store.cluster_nodes(session, cluster)
    return [_Node(r.id, r.hostname, NodeState(r.state), r.state_since, r.cluster_id) for r in rows]


def cluster_settings(db: Database, cluster: str) -> Settings:
    """The settings in force for the cluster as a whole: the defaults, then the fleet's and the cluster's overrides
    (``gpufleet policy override``), the same values remediation reads."""
    with db.reader() as session:
        return overridden_settings(Settings(), store.setting_overrides(session, cluster))


def sync_cluster(
    db: Database, cluster: str, actor: Actor = SYSTEM, registry: DriverRegistry | None = None
) -> SyncReport:
    """Reconcile one cluster once, both ways. Safe to run from several processes and to repeat."""
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("syncing a cluster needs the operator role")
    target = cluster_target(db, cluster)
    report = SyncReport(cluster, target.driver, db.clock.now())
    with store.cluster_lock(db, cluster) as got:
        if not got:
            report.skipped = True
            return report
        scheduler = Scheduler((registry or default_registry()).create(target))
        nodes = _nodes(db, cluster)
        try:
            if scheduler.can_list_nodes:
                statuses = {s.node: s for s in scheduler.list_nodes()}
            else:
                statuses = {n.hostname: scheduler.node_status(n.hostname) for n in nodes}
        except DriverError as exc:
            report.reachable = False
            report.error = str(exc)
            return report
        sync = _Sync(db, scheduler, report, cluster_settings(db, cluster), actor)
        known = {n.hostname for n in nodes}
        report.unknown_to_gpufleet = sorted(set(statuses) - known)
        for node in nodes:
            status = statuses.get(node.hostname)
            if status is None:
                if node.state is not NodeState.DECOMMISSIONED:
                    report.missing_in_cluster.append(node.hostname)
                continue
            report.nodes += 1
            sync.observe(node, status)
            sync.reconcile(node, status)
    return report


def check_cluster(db: Database, cluster: str, actor: Actor, registry: DriverRegistry | None = None) -> dict[str, Any]:
    """Can gpufleet reach the cluster's scheduler, and what does it see there."""
    if actor.role < Role.VIEWER or actor.tenant_scoped:
        raise Forbidden("checking a cluster needs a token not scoped to a tenant")
    target = cluster_target(db, cluster)
    driver = (registry or default_registry()).create(target)
    seen: dict[str, Any] = {"cluster": cluster, "driver": target.driver}
    try:
        if isinstance(driver, Checks):
            seen.update(driver.check())
        else:
            seen.update(reachable=True, detail="the simulated driver is always reachable")
    except DriverError as exc:
        seen.update(reachable=False, error=str(exc), retryable=exc.retryable)
    return seen


def resume_in_scheduler(
    db: Database,
    node_ref: str,
    reason: str | None,
    actor: Actor,
    override: bool = False,
    registry: DriverRegistry | None = None,
) -> dict[str, Any]:
    """Return a node to the scheduler's service. A hold someone else made is lifted only with ``override``."""
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("resuming a node needs the operator role")
    text_reason = check_reason(reason)
    now = db.clock.now()
    with db.reader() as session:
        node_id = resolve_node_id(session, node_ref, actor, now)
        row = store.node_with_cluster(session, node_id)
    if NodeState(row.state) in HELD_STATES:
        raise InvalidInput(
            f"gpufleet holds this node ({row.state}); move it back to service through its lifecycle instead",
            field="node",
        )
    target = cluster_target(db, row.name)
    scheduler = Scheduler((registry or default_registry()).create(target))
    node = _Node(node_id, row.hostname, NodeState(row.state), row.state_since, row.cluster_id)
    try:
        scheduler.uncordon(row.hostname, text_reason, override=override)
    except HeldByOthers as exc:
        raise HeldOutside(str(exc)) from None
    except DriverError as exc:
        raise DriverUnavailable(str(exc)) from None
    data = {"driver": target.driver, "override": override}
    rows = [_event_row(node, ACTION, "uncordon", actor.name, text_reason, data, actor.correlation_id, now)]
    with db.transaction() as session:
        store.add_events(session, rows)
    return {"node": row.hostname, "cluster": row.name, "resumed": True, "override": override}


def reboot_in_scheduler(
    db: Database, node_ref: str, reason: str | None, actor: Actor, registry: DriverRegistry | None = None
) -> dict[str, Any]:
    """Ask the scheduler to reboot a node; the sync then records whether it came back (or escalates)."""
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("rebooting a node needs the operator role")
    text_reason = check_reason(reason)
    now = db.clock.now()
    with db.reader() as session:
        node_id = resolve_node_id(session, node_ref, actor, now)
        row = store.node_with_cluster(session, node_id)
    target = cluster_target(db, row.name)
    scheduler = Scheduler((registry or default_registry()).create(target))
    node = _Node(node_id, row.hostname, NodeState(row.state), row.state_since, row.cluster_id)
    hold = NodeState(row.state) is not NodeState.IN_SERVICE
    try:
        before = scheduler.power_status(row.hostname)
        scheduler.reboot(row.hostname, tag_reason(text_reason), hold=hold)
    except DriverError as exc:
        raise DriverUnavailable(str(exc)) from None
    data = {
        "driver": target.driver,
        "hold": hold,
        "booted_at": before.booted_at.isoformat() if before.booted_at else None,
    }
    with db.transaction() as session:
        store.add_events(
            session, [_event_row(node, ACTION, "reboot", actor.name, text_reason, data, actor.correlation_id, now)]
        )
    return {"node": row.hostname, "cluster": row.name, "reboot": "requested", "hold": hold}


def synced_clusters(db: Database) -> list[str]:
    """Clusters with a real driver (not simulated) and not decommissioned: what the sync controller works on."""
    with db.reader() as session:
        return store.synced_cluster_names(session)
