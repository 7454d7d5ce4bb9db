"""The node lifecycle: one declared table that the API, the CLI, controllers and the diagram all read.

The table is data, not code paths, so that an operator reading ``gpufleet lifecycle diagram`` sees exactly
what the service enforces. Nothing here does I/O or reads a clock: callers pass ``now`` in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class NodeState(StrEnum):
    RECEIVED = "received"
    """Delivered by a supplier and recorded, not yet touched by provisioning."""
    PROVISIONING = "provisioning"
    """Being imaged, configured and joined to its cluster's scheduler."""
    PROVISION_FAILED = "provision_failed"
    """Provisioning gave up; a human or a retry must act."""
    VALIDATING = "validating"
    """Running the cluster's validation policy; it takes no customer work yet."""
    IN_SERVICE = "in_service"
    """Healthy and schedulable: the only state that counts as capacity."""
    QUARANTINED = "quarantined"
    """Cordoned after a suspected fault: running work continues, no new work lands."""
    DRAINING = "draining"
    """Work is being moved off the node."""
    DRAINED = "drained"
    """Idle and unschedulable: safe to diagnose, repair or maintain."""
    DIAGNOSING = "diagnosing"
    """Active diagnostics decide what is wrong."""
    REPAIRING = "repairing"
    """A repair action (GPU reset, reboot, reimage) is under way."""
    AWAITING_SUPPLIER = "awaiting_supplier"
    """Handed to the supplier (RMA or escalation); the clock is theirs."""
    MAINTENANCE = "maintenance"
    """Planned work holds the node."""
    DECOMMISSIONING = "decommissioning"
    """Leaving the fleet: wiping, unracking, returning."""
    DECOMMISSIONED = "decommissioned"
    """Gone. Kept for its history; never pages, never counts as capacity."""


FINAL_STATES: frozenset[NodeState] = frozenset({NodeState.DECOMMISSIONED})
"""States a node never leaves."""

STABLE_STATES: frozenset[NodeState] = frozenset({NodeState.IN_SERVICE})
"""Non-final states a node may rightly stay in indefinitely, so they carry no escalation timer."""

CAPACITY_STATES: frozenset[NodeState] = frozenset({NodeState.IN_SERVICE})
"""States whose GPUs count as capacity in customers' hands."""

SERVING_STATES: frozenset[NodeState] = frozenset({NodeState.IN_SERVICE, NodeState.VALIDATING})
"""States in which a node runs or may be given work, so a new fault on it opens a remediation case."""

CORDONED_STATES: frozenset[NodeState] = frozenset({NodeState.QUARANTINED, NodeState.DRAINING, NodeState.DRAINED})
"""States in which no new work lands on the node and nothing has started on it yet."""

REMEDIATION_STATES: frozenset[NodeState] = CORDONED_STATES | {
    NodeState.DIAGNOSING,
    NodeState.REPAIRING,
    NodeState.VALIDATING,
}
"""States a remediation case moves its node through on the way back to service."""

LEAVING_STATES: frozenset[NodeState] = frozenset({NodeState.DECOMMISSIONING, NodeState.DECOMMISSIONED})
"""States of a node leaving the fleet: never allocated, never counted in a cluster's size or budgets."""

HELD_STATES: frozenset[NodeState] = CORDONED_STATES | {
    NodeState.DIAGNOSING,
    NodeState.REPAIRING,
    NodeState.AWAITING_SUPPLIER,
    NodeState.MAINTENANCE,
    NodeState.DECOMMISSIONING,
}
"""States in which gpufleet keeps a node out of the scheduler's service."""

PAGE_SUPPRESSED_STATES: frozenset[NodeState] = HELD_STATES | FINAL_STATES
"""States where a fault on the node is already known and owned, so it must not page anyone again."""


@dataclass(frozen=True)
class StatePolicy:
    """What moves a state on, who owns that, and how long it may take before someone is told."""

    action: str
    owner: str
    time_limit: timedelta | None


STATE_POLICIES: Mapping[NodeState, StatePolicy] = {
    NodeState.RECEIVED: StatePolicy("start provisioning (event: provision)", "fleet-engineering", timedelta(days=3)),
    NodeState.PROVISIONING: StatePolicy(
        "finish imaging and join the scheduler (event: provisioned)", "automation", timedelta(hours=4)
    ),
    NodeState.PROVISION_FAILED: StatePolicy(
        "fix the cause and retry (event: retry) or give up (event: decommission)",
        "fleet-engineering",
        timedelta(days=1),
    ),
    NodeState.VALIDATING: StatePolicy(
        "finish the cluster's validation policy (event: admit or fail_validation)",
        "automation",
        timedelta(days=1),
    ),
    NodeState.IN_SERVICE: StatePolicy("none: serving customers", "cluster-operations", None),
    NodeState.QUARANTINED: StatePolicy(
        "drain the node (event: drain) or clear a false alarm (event: release)",
        "automation",
        timedelta(hours=1),
    ),
    NodeState.DRAINING: StatePolicy(
        "wait for running work to leave (event: drained)", "automation", timedelta(hours=4)
    ),
    NodeState.DRAINED: StatePolicy(
        "diagnose, start maintenance or decommission (event: diagnose, start_maintenance, decommission)",
        "automation",
        timedelta(hours=2),
    ),
    NodeState.DIAGNOSING: StatePolicy(
        "decide the repair (event: repair, diagnosed_healthy or escalate_supplier)",
        "automation",
        timedelta(hours=2),
    ),
    NodeState.REPAIRING: StatePolicy(
        "complete the repair (event: repaired, repair_failed or escalate_supplier)",
        "automation",
        timedelta(hours=8),
    ),
    NodeState.AWAITING_SUPPLIER: StatePolicy(
        "supplier returns the hardware (event: supplier_returned)", "supplier", timedelta(days=14)
    ),
    NodeState.MAINTENANCE: StatePolicy(
        "finish the maintenance work (event: maintenance_done)", "maintenance-owner", timedelta(days=2)
    ),
    NodeState.DECOMMISSIONING: StatePolicy(
        "finish wiping and removal (event: decommissioned)", "fleet-engineering", timedelta(hours=24)
    ),
    NodeState.DECOMMISSIONED: StatePolicy("none: final", "nobody", None),
}


@dataclass(frozen=True)
class TransitionContext:
    """Facts a guard may look at. Services fill them in from storage; the table never reads storage itself."""

    has_active_allocation: bool = False
    validation_passed: bool = False
    forced: bool = False


Guard = Callable[[TransitionContext], str | None]
"""Returns ``None`` when the transition may go ahead, or the reason it may not."""


def no_active_allocation(ctx: TransitionContext) -> str | None:
    if ctx.has_active_allocation and not ctx.forced:
        return "the node is still allocated to a tenant; end the allocation first"
    return None


def validation_passed(ctx: TransitionContext) -> str | None:
    if not ctx.validation_passed and not ctx.forced:
        return "the node has no passing validation attempt since it entered validating; record one first"
    return None


@dataclass(frozen=True)
class Transition:
    source: NodeState
    event: str
    target: NodeState
    doc: str
    guards: tuple[Guard, ...] = field(default=())


S = NodeState
TRANSITIONS: tuple[Transition, ...] = (
    # Bring-up.
    Transition(S.RECEIVED, "provision", S.PROVISIONING, "provisioning starts on newly received hardware"),
    Transition(S.PROVISIONING, "provisioned", S.VALIDATING, "an imaged node must prove itself before service"),
    Transition(S.PROVISIONING, "provision_failed", S.PROVISION_FAILED, "provisioning may fail"),
    Transition(S.PROVISION_FAILED, "retry", S.PROVISIONING, "a failed provisioning may be retried"),
    Transition(
        S.VALIDATING,
        "admit",
        S.IN_SERVICE,
        "a node that passed validation takes customer work",
        (validation_passed,),
    ),
    Transition(S.VALIDATING, "fail_validation", S.DIAGNOSING, "a failed validation pass sends the node to diagnosis"),
    # Faults.
    Transition(S.IN_SERVICE, "quarantine", S.QUARANTINED, "a suspected fault stops new work landing"),
    Transition(S.VALIDATING, "quarantine", S.QUARANTINED, "a fault seen during validation stops the attempt"),
    Transition(S.QUARANTINED, "release", S.IN_SERVICE, "a false alarm returns the node to service"),
    Transition(S.QUARANTINED, "drain", S.DRAINING, "a confirmed fault moves work off the node"),
    Transition(S.IN_SERVICE, "drain", S.DRAINING, "planned work starts by moving work off the node"),
    Transition(S.DRAINING, "drained", S.DRAINED, "the last job left the node"),
    Transition(S.DRAINED, "diagnose", S.DIAGNOSING, "an idle node can run active diagnostics"),
    Transition(S.DIAGNOSING, "repair", S.REPAIRING, "diagnosis chose a repair action"),
    Transition(S.DIAGNOSING, "diagnosed_healthy", S.VALIDATING, "diagnosis found nothing: validate and return"),
    Transition(S.DIAGNOSING, "escalate_supplier", S.AWAITING_SUPPLIER, "the fault is the supplier's to fix"),
    Transition(S.REPAIRING, "repaired", S.VALIDATING, "a repaired node must pass validation again"),
    Transition(S.REPAIRING, "repair_failed", S.DIAGNOSING, "a repair that did not help goes back to diagnosis"),
    Transition(S.REPAIRING, "escalate_supplier", S.AWAITING_SUPPLIER, "the repair needs the supplier (RMA)"),
    Transition(S.AWAITING_SUPPLIER, "supplier_returned", S.VALIDATING, "returned hardware takes the slow path"),
    # Planned maintenance.
    Transition(S.DRAINED, "start_maintenance", S.MAINTENANCE, "planned work begins on a drained node"),
    Transition(S.MAINTENANCE, "maintenance_done", S.VALIDATING, "a node back from maintenance is validated"),
    # Leaving the fleet.
    Transition(S.RECEIVED, "decommission", S.DECOMMISSIONING, "hardware may be refused before provisioning"),
    Transition(S.PROVISION_FAILED, "decommission", S.DECOMMISSIONING, "hardware that never provisions is retired"),
    Transition(
        S.DRAINED,
        "decommission",
        S.DECOMMISSIONING,
        "a drained node may leave the fleet",
        (no_active_allocation,),
    ),
    Transition(
        S.AWAITING_SUPPLIER,
        "decommission",
        S.DECOMMISSIONING,
        "hardware the supplier will not return is retired",
        (no_active_allocation,),
    ),
    Transition(S.DECOMMISSIONING, "decommissioned", S.DECOMMISSIONED, "removal is complete"),
)

_BY_SOURCE: dict[NodeState, dict[str, Transition]] = {}
for _t in TRANSITIONS:
    _BY_SOURCE.setdefault(_t.source, {})[_t.event] = _t

EVENTS: tuple[str, ...] = tuple(sorted({t.event for t in TRANSITIONS}))


class InvalidTransition(Exception):
    """An event that the table does not allow from the node's current state, or that a guard refused."""

    def __init__(self, state: NodeState, event: str, allowed: list[str], why: str | None = None) -> None:
        self.state = state
        self.event = event
        self.allowed = allowed
        self.why = why
        if why:
            message = f"event '{event}' is refused from state '{state}': {why}"
        else:
            allowed_text = ", ".join(allowed) if allowed else "none (final state)"
            message = f"event '{event}' is not allowed from state '{state}'; allowed: {allowed_text}"
        super().__init__(message)


def unguarded_targets(event: str) -> dict[NodeState, NodeState]:
    """Source -> target for every unguarded transition on ``event``.

    Storage can apply these in one conditional UPDATE (the row's current state picks the target), which makes the
    common transition a single round trip while the table stays the only place that says what is allowed.
    """
    return {t.source: t.target for t in TRANSITIONS if t.event == event and not t.guards}


def has_guards(event: str) -> bool:
    return any(t.guards for t in TRANSITIONS if t.event == event)


def uses_guard(event: str, guard: Guard) -> bool:
    """Whether any transition on ``event`` checks ``guard``, so services gather only the facts it needs."""
    return any(guard in t.guards for t in TRANSITIONS if t.event == event)


def allowed_events(state: NodeState) -> list[str]:
    return sorted(_BY_SOURCE.get(state, {}))


def next_state(state: NodeState, event: str, ctx: TransitionContext | None = None) -> NodeState:
    """Decide where ``event`` takes a node in ``state``, or raise ``InvalidTransition`` naming what is allowed."""
    transition = _BY_SOURCE.get(state, {}).get(event)
    if transition is None:
        raise InvalidTransition(state, event, allowed_events(state))
    context = ctx or TransitionContext()
    for guard in transition.guards:
        why = guard(context)
        if why is not None:
            raise InvalidTransition(state, event, allowed_events(state), why)
    return transition.target


def parse_state(value: str) -> NodeState:
    """Read a state name from user input, with an error that lists the valid names."""
    try:
        return NodeState(value.strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in NodeState)
        raise ValueError(f"unknown state '{value}'; expected one of: {names}") from None


def deadline(state: NodeState, entered_at: datetime) -> datetime | None:
    """When a node that entered ``state`` at ``entered_at`` counts as stuck."""
    limit = STATE_POLICIES[state].time_limit
    return None if limit is None else entered_at + limit


def is_overdue(state: NodeState, entered_at: datetime, now: datetime) -> bool:
    due = deadline(state, entered_at)
    return due is not None and now >= due
