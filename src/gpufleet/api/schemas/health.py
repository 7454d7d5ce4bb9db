"""What the health routes answer: health events, ingest reports, agent requests, and the server's own /healthz. Read
from gpufleet.health.events, .ingest and .requests and routes/health.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NotRequired

from pydantic import Field, with_config
from typing_extensions import TypedDict

from gpufleet.api.schemas import Out

Severity = Literal["info", "warning", "critical"]


class EventNodeOut(Out):
    id: str
    hostname: str | None
    serial: str | None


class HealthEventOut(Out):
    id: int
    observed_at: datetime
    received_at: datetime
    source: str = Field(description="xid, nvidia-smi, dcgm, alertmanager, json or agent.")
    code: str = Field(description="e.g. xid:79.")
    severity: Severity
    status: str = Field(description="firing or resolved.")
    node: EventNodeOut | None = Field(description="Null: no node was found for the event (it is unmatched).")
    gpu_index: int | None
    subject: str
    message: str
    flag: str | None = Field(description="Why the event was not acted on (stale, future, ...), if so.")
    unmatched: str | None = Field(description="Why no node or GPU was found, if so.")
    processed_at: datetime | None
    case_id: int | None
    data: dict[str, Any]


class EventPageOut(Out):
    items: list[HealthEventOut]
    next_before: int | None = Field(description="Pass back as `before` for the next (older) page; null on the last.")


class RematchOut(Out):
    examined: int
    matched: int
    still_unmatched: int
    stale: int
    event_ids: list[int] = Field(description="The events handed to remediation.")


class IngestProblemOut(Out):
    line: int | None
    where: str
    message: str


class UnmatchedOut(Out):
    line: int
    where: str
    subject: str
    reason: str
    event_id: int | None


class HealthIngestReportOut(Out):
    source: str
    format: str
    readings: int = Field(description="Lines, documents or alerts read, whether or not they showed a fault.")
    ignored_lines: int = Field(description="Kernel log lines that are not Xid lines.")
    events: int
    accepted: int = Field(description="New events recorded.")
    duplicates: int
    unmatched_count: int
    future: int
    stale: int
    gpu_unresolved: int
    gpus_learned: int
    problem_count: int
    ok: bool
    summary: str
    problems: list[IngestProblemOut] = Field(description="What could not be read (at most 1000).")
    unmatched: list[UnmatchedOut] = Field(description="Events no node or GPU was found for (at most 1000).")
    event_ids: list[int]


class AgentRequestOut(Out):
    id: int
    node: str = Field(description="The chassis id.")
    kind: str = Field(description="dcgm-diag.")
    level: int
    status: Literal["pending", "running", "done", "failed"]
    reason: str
    requested_by: str
    requested_at: datetime
    claimed_at: datetime | None
    attempts: int
    finished_at: datetime | None
    result: dict[str, Any]
    created: bool = Field(description="True when this call made the request.")


class AgentRequestsOut(Out):
    items: list[AgentRequestOut]


class ClaimOut(Out):
    requests: list[AgentRequestOut] = Field(description="What the agent should run now.")


@with_config(extra="forbid")
class HealthzOut(TypedDict):
    """`schema`, `revision` and `expected_revision` when the database answered, `error` when it did not."""

    status: Literal["ok", "unavailable"]
    database: Literal["reachable", "unreachable"]
    error: NotRequired[str]
    schema: NotRequired[Literal["current", "outdated"]]
    revision: NotRequired[str | None]
    expected_revision: NotRequired[str | None]
