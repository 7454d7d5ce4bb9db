"""Remediation cases: one declared state machine per node incident, the escalation ladder, and the figures' arithmetic.

A case walks detected -> quarantined -> draining -> diagnosing -> repairing(action) -> validating -> reintegrated, or
leaves automation for the supplier (escalated, an RMA) or for a person (needs_human). The table below is what the
controller, the API and ``gpufleet cases`` all read. Every open state has a time limit, so no case waits forever:
past it, the controller escalates. Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gpufleet.domain.settings import Settings
from gpufleet.domain.xid_policy import LADDER_ORDER, Action, Kind, XidPolicy, strength


class CaseState(StrEnum):
    DETECTED = "detected"
    """Evidence arrived; the node is still as it was (held here by a budget, the breaker or a dry run)."""
    QUARANTINED = "quarantined"
    """Cordoned: no new work lands."""
    DRAINING = "draining"
    DIAGNOSING = "diagnosing"
    """Idle: diagnostics and the policy choose the repair."""
    REPAIRING = "repairing"
    """A repair action from the ladder is under way."""
    VALIDATING = "validating"
    """Proving health before return: the cluster's validation policy (fast track after a software repair)."""
    ESCALATED = "escalated"
    """Handed to the supplier (RMA) with a ticket and the evidence."""
    NEEDS_HUMAN = "needs_human"
    """Automation stopped; a person of ours must act."""
    REINTEGRATED = "reintegrated"
    """Back in service after a passing validation."""
    CLOSED = "closed"
    """Ended without reintegration: dismissed, a dry run, or closed by a person."""


FINAL_CASE_STATES: frozenset[CaseState] = frozenset({CaseState.REINTEGRATED, CaseState.CLOSED})
OPEN_CASE_STATES: tuple[CaseState, ...] = tuple(s for s in CaseState if s not in FINAL_CASE_STATES)
ACTIVE_STATES: frozenset[CaseState] = frozenset(
    {CaseState.QUARANTINED, CaseState.DRAINING, CaseState.DIAGNOSING, CaseState.REPAIRING, CaseState.VALIDATING}
)
"""States in which automation holds the node out of service: what the blast-radius budgets count."""


@dataclass(frozen=True)
class CaseTransition:
    source: CaseState
    event: str
    target: CaseState
    doc: str
    person: str | None = None
    """The action a person names to take this transition (``gpufleet cases act ID ACTION``); ``None``: automation's."""


C = CaseState
_OPEN_NON_HUMAN = (C.DETECTED, C.QUARANTINED, C.DRAINING, C.DIAGNOSING, C.REPAIRING, C.VALIDATING, C.ESCALATED)
CASE_TRANSITIONS: tuple[CaseTransition, ...] = (
    CaseTransition(C.DETECTED, "quarantine", C.QUARANTINED, "a suspected fault stops new work landing"),
    CaseTransition(C.DETECTED, "dismiss", C.CLOSED, "nothing to do: a dry run, or the node is not in service"),
    CaseTransition(C.QUARANTINED, "drain", C.DRAINING, "work moves off the node"),
    CaseTransition(C.DRAINING, "drained", C.DIAGNOSING, "the idle node runs diagnostics"),
    CaseTransition(C.DIAGNOSING, "repair", C.REPAIRING, "the ladder chose a repair"),
    CaseTransition(C.DIAGNOSING, "diagnosed_healthy", C.VALIDATING, "nothing to repair: validate and return"),
    CaseTransition(C.REPAIRING, "repaired", C.VALIDATING, "a repaired node proves its health before it returns"),
    CaseTransition(C.REPAIRING, "repair_failed", C.DIAGNOSING, "a repair that did not take goes back to the ladder"),
    CaseTransition(C.VALIDATING, "admit", C.REINTEGRATED, "a passing validation returns the node to service"),
    CaseTransition(C.VALIDATING, "validation_failed", C.DIAGNOSING, "a failed check climbs the ladder"),
    *(
        CaseTransition(s, "escalate", C.ESCALATED, "the supplier must fix it (RMA)")
        for s in (C.DIAGNOSING, C.REPAIRING)
    ),
    CaseTransition(C.ESCALATED, "supplier_returned", C.VALIDATING, "returned hardware takes the slow path"),
    *(CaseTransition(s, "need_human", C.NEEDS_HUMAN, "automation stops here") for s in _OPEN_NON_HUMAN),
    CaseTransition(C.NEEDS_HUMAN, "need_human", C.NEEDS_HUMAN, "still waiting: raised again"),
    CaseTransition(
        C.NEEDS_HUMAN, "human_repaired", C.VALIDATING, "a person repaired it; validation decides", person="repaired"
    ),
    CaseTransition(
        C.NEEDS_HUMAN, "human_retry", C.DIAGNOSING, "a person hands the case back to automation", person="retry"
    ),
    CaseTransition(C.NEEDS_HUMAN, "escalate", C.ESCALATED, "a person hands it to the supplier", person="escalate"),
    *(CaseTransition(s, "close", C.CLOSED, "a person closes the case", person="close") for s in OPEN_CASE_STATES),
)

PERSON_ACTIONS: Mapping[str, CaseTransition] = {t.person: t for t in CASE_TRANSITIONS if t.person}
"""What a person may ask of a case, each with the transition it ends in: read by the API, the CLI and the console."""

_BY_SOURCE: dict[CaseState, dict[str, CaseTransition]] = {}
for _t in CASE_TRANSITIONS:
    _BY_SOURCE.setdefault(_t.source, {})[_t.event] = _t


class InvalidCaseTransition(Exception):
    def __init__(self, state: CaseState, event: str) -> None:
        self.state = state
        self.event = event
        allowed = ", ".join(sorted(_BY_SOURCE.get(state, {}))) or "none (the case is closed)"
        super().__init__(f"a case in '{state}' cannot take '{event}'; allowed: {allowed}")


def next_case_state(state: CaseState, event: str) -> CaseState:
    transition = _BY_SOURCE.get(state, {}).get(event)
    if transition is None:
        raise InvalidCaseTransition(state, event)
    return transition.target


def case_events(state: CaseState) -> list[str]:
    return sorted(_BY_SOURCE.get(state, {}))


def automation_events(state: CaseState) -> list[str]:
    """The events automation may take from ``state`` (the rest of ``case_events`` are a person's)."""
    return sorted({t.event for t in CASE_TRANSITIONS if t.source is state and t.person is None})


def person_actions(state: CaseState) -> list[str]:
    """The actions a person may take on a case in ``state``: a person takes any open case over, so every person action
    is offered while the case is open, and none once it is final."""
    return [] if state in FINAL_CASE_STATES else list(PERSON_ACTIONS)


@dataclass(frozen=True)
class CaseStatePolicy:
    owner: str
    doc: str


CASE_STATE_POLICIES: Mapping[CaseState, CaseStatePolicy] = {
    C.DETECTED: CaseStatePolicy("automation", "quarantine once the budgets and the breaker allow"),
    C.QUARANTINED: CaseStatePolicy("automation", "start the drain"),
    C.DRAINING: CaseStatePolicy("automation", "wait for work to leave; the drain deadline ends the rest"),
    C.DIAGNOSING: CaseStatePolicy("automation", "run diagnostics, then choose the rung"),
    C.REPAIRING: CaseStatePolicy("automation", "carry out the rung's action"),
    C.VALIDATING: CaseStatePolicy("automation", "run the cluster's validation path"),
    C.ESCALATED: CaseStatePolicy("supplier", "the supplier returns the hardware"),
    C.NEEDS_HUMAN: CaseStatePolicy("operations", "repair, retry, escalate or close, with a reason"),
    C.REINTEGRATED: CaseStatePolicy("nobody", "final"),
    C.CLOSED: CaseStatePolicy("nobody", "final"),
}


def time_limit(state: CaseState, settings: Settings, step_limit: timedelta | None = None) -> timedelta | None:
    """How long a case may stay in ``state`` before the controller escalates it. ``step_limit`` is the running
    repair rung's (or a validation plan's) own limit."""
    limits: dict[CaseState, timedelta] = {
        C.DETECTED: timedelta(hours=1),
        C.QUARANTINED: timedelta(minutes=15),
        C.DRAINING: timedelta(minutes=settings.drain_deadline_minutes + 60),
        C.DIAGNOSING: timedelta(hours=1),
        C.REPAIRING: timedelta(hours=4),
        C.VALIDATING: timedelta(hours=24),
        C.ESCALATED: timedelta(days=settings.supplier_days),
        C.NEEDS_HUMAN: timedelta(hours=settings.human_hours),
    }
    if state in (C.REPAIRING, C.VALIDATING) and step_limit is not None:
        return step_limit
    return limits.get(state)


def case_deadline(
    state: CaseState, since: datetime, settings: Settings, step_limit: timedelta | None = None
) -> datetime | None:
    limit = time_limit(state, settings, step_limit)
    return None if limit is None else since + limit


# ---------------------------------------------------------------------------------------------------------------
# The escalation ladder.


@dataclass(frozen=True)
class RepairChoice:
    action: Action
    attempt: int
    """1 for the first try at this rung."""
    wait: timedelta
    """Backoff before trying (zero for a new rung)."""
    reason: str

    @property
    def needs_human(self) -> bool:
        return self.action is Action.INSPECT

    @property
    def to_supplier(self) -> bool:
        return self.action is Action.RMA


DIAGNOSIS_FLOOR: Mapping[str, Action] = {
    "reset": Action.RESET_GPU,
    "reboot": Action.REBOOT,
    "reimage": Action.REIMAGE,
    "rma": Action.RMA,
}
"""A diagnostic's recommendation (DCGM severities as drivers report them) as the lightest rung worth trying."""


def stronger(a: Action, b: Action | None) -> Action:
    return a if b is None or strength(a) >= strength(b) else b


def next_repair(
    policy: XidPolicy,
    start: Action,
    floor: Action | None = None,
    last: Action | None = None,
    attempts: int = 0,
) -> RepairChoice:
    """The rung to try now.

    ``start`` is what the evidence asks for, ``floor`` what diagnostics recommend; the stronger wins. After a failed
    rung (``last``, tried ``attempts`` times) the same rung is retried with backoff while it has attempts left, then
    the next rung is tried. When diagnostics still point at a part after resets (or reboots), a person reseats it.
    """
    base = stronger(start, floor)
    if base is Action.NONE:
        base = LADDER_ORDER[0]
    if last is None:
        return RepairChoice(base, 1, timedelta(0), f"first try: {base.value}")
    if base is Action.INSPECT or strength(base) > strength(last):
        return RepairChoice(base, 1, timedelta(0), f"{last.value} did not help; the evidence now asks for {base.value}")
    step = policy.step(last)
    allowed = step.attempts if step is not None else 1
    if attempts < allowed:
        wait = policy.backoff.delay(attempts)
        return RepairChoice(last, attempts + 1, wait, f"{last.value} failed; retry {attempts + 1} of {allowed}")
    if floor is Action.RESET_GPU and last in (Action.RESET_GPU, Action.REBOOT, Action.REIMAGE):
        return RepairChoice(Action.INSPECT, 1, timedelta(0), f"{last.value} did not clear it: the part needs a reseat")
    if last in (Action.RMA, Action.INSPECT):
        return RepairChoice(Action.INSPECT, 1, timedelta(0), f"{last.value} did not hold: a person must look")
    higher = LADDER_ORDER[LADDER_ORDER.index(last) + 1] if last in LADDER_ORDER else Action.RMA
    return RepairChoice(higher, 1, timedelta(0), f"{last.value} exhausted its {allowed} attempt(s): {higher.value}")


def kind_after(kind: Kind, action: Action) -> Kind:
    """A case that ends at the supplier or under a person's hands was a hardware fault, whatever it looked like."""
    return Kind.HARDWARE if action in (Action.RMA, Action.INSPECT) else kind


SOFTWARE_ONLY: frozenset[Action] = frozenset(
    {Action.NONE, Action.RESTART_APP, Action.RESET_GPU, Action.REBOOT, Action.REIMAGE}
)
"""Repairs that change no hardware, so a node fixed by them keeps its validation fast track."""


# ---------------------------------------------------------------------------------------------------------------
# Figures.


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


MTTR_GROUPS: Mapping[Kind, str] = {Kind.SOFTWARE: "software", Kind.WORKLOAD: "software", Kind.HARDWARE: "hardware"}
"""Workload faults are repaired like software ones (restart, reset), so they count on the software side."""
