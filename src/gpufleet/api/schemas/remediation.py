"""What the remediation routes answer: the health policy and its overrides, figures, breakers, tickets, channels,
the outbox, reboots and a controller pass. Read from gpufleet.remediation.policy, .safety, .tickets, .outbox,
.reboots, .engine (PassReport) and gpufleet.reports.remediation."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any, Literal, get_type_hints

from pydantic import Field, create_model

from gpufleet.api.schemas import Out
from gpufleet.domain.xid_policy import XidPolicy

# ---------------------------------------------------------------------------------------------------------------
# The health policy.


class PolicyScopeOut(Out):
    cluster: str | None
    pool: str | None


SETTINGS: Any = get_type_hints(XidPolicy)["settings"]
"""The domain's settings dataclass, as the policy that carries them declares it."""


def _settings_model() -> type[Out]:
    """The settings' shape, made from the domain's own dataclass so the two never disagree: one member per field,
    with its type and its documented meaning."""
    hints = get_type_hints(SETTINGS)
    members: dict[str, Any] = {}
    for item in fields(SETTINGS):
        doc, unit = item.metadata.get("doc"), item.metadata.get("unit")
        text = f"{doc} Unit: {unit}." if doc and unit else doc
        members[item.name] = (hints[item.name], Field(description=text))
    return create_model(
        "PolicySettingsOut",
        __base__=Out,
        __doc__="Safety limits and timings (the domain's Settings); `setting:<name>` overrides change them.",
        **members,
    )


PolicySettingsOut = _settings_model()


class LadderStepOut(Out):
    action: str
    attempts: int
    time_limit_minutes: float


class BackoffOut(Out):
    initial_seconds: float
    factor: float
    max_seconds: float


class RelatedRuleOut(Out):
    code: str
    with_any: list[str]
    action: str
    drain: str
    reason: str


class RepeatRuleOut(Out):
    name: str
    counts: str = Field(description="fatal_events or cases.")
    kinds: list[str]
    count: int
    window_hours: float
    action: str
    reason: str


class CodeRuleOut(Out):
    code: str
    action: str
    kind: str
    owner: str
    fatal: bool
    drain: str
    name: str
    about: str
    catalog: dict[str, str] = Field(description="NVIDIA's own resolution buckets for the code.")


class PrefixRuleOut(CodeRuleOut):
    prefix: str
    min_severity: str


class OverrideOut(Out):
    id: int
    cluster: str | None
    pool: str | None
    key: str = Field(description="code:<code> or setting:<name>.")
    value: Any
    reason: str
    actor: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None


class HealthPolicyOut(Out):
    scope: PolicyScopeOut
    version: str
    source: str
    settings: PolicySettingsOut  # type: ignore[valid-type]
    ladder: list[LadderStepOut]
    backoff: BackoffOut
    follows: list[str]
    related: list[RelatedRuleOut]
    repeats: list[RepeatRuleOut]
    prefixes: list[PrefixRuleOut]
    codes: dict[str, CodeRuleOut]
    overrides: list[OverrideOut] = Field(description="The overrides in force that made this policy.")


# ---------------------------------------------------------------------------------------------------------------
# Figures.


class MttrOut(Out):
    count: int
    p50: float | None
    p90: float | None


class UnresolvedOut(Out):
    count: int
    age_p50: float | None
    age_max: float | None


class TallyOut(Out):
    cases: int
    automated: int
    rate: float | None


class AutomationOut(TallyOut):
    by_supplier: dict[str, TallyOut]
    by_cluster: dict[str, TallyOut]


class RebootFiguresOut(Out):
    total: int
    requested: int
    observed: int
    returned: int
    not_returned: int
    pending: int
    returned_share: float | None
    minutes_p50: float | None
    minutes_p90: float | None


class BreakdownOut(Out):
    cases: int
    mean_minutes_by_state: dict[str, float]
    share_by_state: dict[str, float]


class FiguresOut(Out):
    cases_total: int
    open_cases: int
    cases_by_state: dict[str, int]
    mttr_minutes: dict[str, MttrOut] = Field(description="software and hardware.")
    unresolved_minutes: dict[str, UnresolvedOut] = Field(description="software and hardware.")
    automation: AutomationOut
    repairs_by_action: dict[str, int]
    reboots: RebootFiguresOut
    mttr_breakdown: dict[str, BreakdownOut] = Field(description="software and hardware: where repair time goes.")


# ---------------------------------------------------------------------------------------------------------------
# Breakers, tickets, channels, the outbox, reboots, a pass.


class BreakerOut(Out):
    cluster: str
    state: Literal["open", "closed"]
    tripped_at: datetime | None
    reason: str | None
    data: dict[str, Any]
    reset_at: datetime | None
    reset_by: str | None
    reset_reason: str | None
    held_cases: int = Field(description="Cases the breaker holds back.")


class TicketOut(Out):
    id: int
    supplier: str
    kind: str
    unit: str
    node: str
    gpu_serial: str | None
    status: Literal["open", "sent", "acknowledged", "resolved", "closed"]
    summary: str
    cases: list[int]
    evidence: list[dict[str, Any]]
    external_ref: str | None
    created_at: datetime
    updated_at: datetime


class ChannelOut(Out):
    name: str
    kind: str
    url: str
    supplier: str | None
    enabled: bool


class OutboxMessageOut(Out):
    id: int
    topic: str
    status: str
    channel: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class OutboxOut(Out):
    by_status: dict[str, int] = Field(description="pending, unrouted, sent and dead.")
    oldest_waiting: datetime | None
    recent: list[OutboxMessageOut] = Field(description="The latest 20 messages.")


class DeliveryOut(Out):
    sent: int
    retrying: int
    unrouted: int
    dead: int
    errors: list[str]


class RebootOut(Out):
    id: int
    node: str
    hostname: str
    cluster: str
    case: int | None
    source: str
    reason: str
    requested_at: datetime
    went_down_at: datetime | None
    came_back_at: datetime | None
    minutes: float | None
    outcome: Literal["pending", "returned", "not_returned"]


class RebootsOut(Out):
    figures: RebootFiguresOut
    reboots: list[RebootOut]


class PassOut(Out):
    events: int
    opened: int
    attached: int
    evidence_only: int
    stale: int
    advanced: int
    closed: int
    next_due: datetime | None
