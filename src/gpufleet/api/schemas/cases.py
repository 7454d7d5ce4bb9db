"""What the case routes answer: the fleet-wide list, one case with its steps and evidence, and a person's decision.
Read from gpufleet.remediation.cases (case_view, show_case) and .intake (node_events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from gpufleet.api.schemas import Out
from gpufleet.domain.remediation import CaseState


class CaseNodeOut(Out):
    id: str
    serial: str
    hostname: str


class CaseOut(Out):
    id: int
    node: CaseNodeOut
    cluster: str
    supplier: str
    pool: str | None
    state: CaseState
    action: str = Field(description="The repair under way, or the one the case started with.")
    attempt: int
    kind: str = Field(description="software or hardware.")
    owner: str
    codes: list[str]
    reason: str
    held: str | None = Field(description="What holds the case back (a budget, the breaker, a dry run), if anything.")
    dry_run: bool
    human: bool = Field(description="A person acted on the case.")
    resolution: str | None
    ticket: int | None
    policy_version: str
    correlation_id: str
    detected_at: datetime
    opened_at: datetime
    state_since: datetime
    closed_at: datetime | None
    next_check_at: datetime | None
    deadline_at: datetime | None
    minutes_to_repair: float | None = Field(description="Detection to reintegration, for a reintegrated case.")
    validation: dict[str, Any] | None = Field(description="The validation plan the case follows, if any.")


class CaseStepOut(Out):
    at: datetime
    actor: str
    kind: str
    from_state: str | None
    to_state: str | None
    action: str | None
    detail: str
    data: dict[str, Any]


class EvidenceOut(Out):
    id: int
    source: str
    code: str
    severity: str
    status: str
    gpu_index: int | None
    message: str
    observed_at: datetime
    received_at: datetime


class CaseRebootOut(Out):
    id: int
    source: str
    requested_at: datetime
    went_down_at: datetime | None
    came_back_at: datetime | None
    minutes: float | None
    outcome: str


class TicketRefOut(Out):
    id: int
    unit: str
    status: str
    kind: str


class CaseDetailOut(CaseOut):
    steps: list[CaseStepOut] = Field(description="Who or what moved the case, and when, oldest first.")
    evidence: list[EvidenceOut] = Field(description="The health events attached to the case, oldest first.")
    reboots: list[CaseRebootOut]
    ticket_detail: TicketRefOut | None


class SupplierReturnOut(Out):
    node: str = Field(description="The chassis id.")
    case: int | None = Field(description="The node's latest case, if it has one.")


class CaseStateOut(Out):
    name: CaseState
    owner: str = Field(description="Who moves a case on from here: automation, the supplier, operations, nobody.")
    work: str = Field(description="What happens in this state.")
    final: bool
    automation_events: list[str] = Field(description="Events automation may take from here.")
    person_actions: list[str] = Field(description="What a person may ask of a case here (POST .../actions).")


class CaseTransitionOut(Out):
    from_: CaseState = Field(alias="from")
    event: str
    to: CaseState
    why: str
    person_action: str | None = Field(description="The person action that takes this transition, if one does.")


class CaseLifecycleOut(Out):
    states: list[CaseStateOut]
    transitions: list[CaseTransitionOut]
