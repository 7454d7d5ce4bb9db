"""What the validation routes answer: cluster policies, plans, suites, result uploads, bans, re-ban rates and the
threshold simulator. Read from gpufleet.validation.policy, .ingest, .bans and .analytics."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from gpufleet.api.schemas import Out
from gpufleet.api.schemas.fleet import RowErrorOut
from gpufleet.domain.validation import CheckKind, ValidationPath


class ValidationPolicyOut(Out):
    """A cluster's validation policy: its fields (gpufleet.domain.validation.ValidationPolicy) and its version."""

    cluster: str
    fast_track_days: int
    fast_track_suite: str
    fast_track_passes: int
    slow_path_suite: str
    slow_path_passes: int
    canary_suite: str
    config_version: str | None
    is_default: bool = Field(description="Never set: the defaults.")
    version: int = Field(description="Also the ETag; 0 while the defaults apply.")
    updated_at: datetime | None
    updated_by: str | None
    changed: bool = Field(description="On a change: whether anything changed.")


class PlanOut(Out):
    node: str
    cluster: str
    gpu_model: str
    attempt: int = Field(description="The number the next attempt should carry.")
    path: ValidationPath
    suite: str
    passes: int
    checks: list[str]
    minutes_per_pass: float
    reason: str
    wait_for: str | None = Field(description="The canary node to wait for, if any.")
    config_version: str | None
    criteria: dict[str, float] = Field(description="The GPU model's floor per measured check.")


class SuiteOut(Out):
    checks: list[str]
    minutes: float
    doc: str


class CheckOut(Out):
    kind: CheckKind
    unit: str | None
    doc: str


class CriteriaOut(Out):
    """`source`, and the floor of each measured check (by check name)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, float]
    source: str


class SuitesOut(Out):
    suites: dict[str, SuiteOut]
    checks: dict[str, CheckOut]
    criteria: dict[str, CriteriaOut] = Field(description="By GPU model.")


class ResultsReportOut(Out):
    source: str
    records: int
    added: int
    duplicates: int
    skipped: int = Field(description="Passes after a failure judged by the criteria: not recorded, not an error.")
    attempts_created: int
    attempts_passed: int
    attempts_failed: int
    applied: bool
    dry_run: bool
    partial: bool
    ok: bool
    summary: str
    errors: list[RowErrorOut]
    notes: list[RowErrorOut] = Field(description="Accepted lines worth a look (at most 1000).")


class BanOut(Out):
    id: int
    node: str
    cluster: str
    at: datetime
    reason: str
    source: str
    created: bool = Field(description="False: the node was already banned since its last admission.")
    quarantined: bool


class BanListItemOut(Out):
    id: int
    node: str
    cluster: str | None
    at: datetime
    reason: str
    source: str
    actor: str


class BansOut(Out):
    items: list[BanListItemOut]


class RebanGroupOut(Out):
    group: str
    admissions: int
    rebanned: int
    rate: float


class RebanOut(Out):
    by: Literal["supplier", "sku", "cluster", "month"]
    days: int
    cluster: str | None
    supplier: str | None
    sku: str | None
    admissions: int
    rebanned: int
    rate: float
    groups: list[RebanGroupOut] = Field(description="Largest rate first; by month: in month order.")


class ThresholdRowOut(Out):
    k: int
    attempts: int
    admitted: int
    extra_admitted: int
    extra_share: float
    admitted_at_n: int
    rebanned_at_n: int
    reban_rate_at_n: float
    expected_bad_admitted: int
    expected_bad_share: float
    gpu_hours_saved: float
    value_of_pass: int
    value_share: float
    gpu_hours_per_extra_admitted: float | None


class ThresholdOut(Out):
    cluster: str | None
    supplier: str | None
    sku: str | None
    days: int
    attempts: int
    passes_required: int
    validation_gpu_hours: float
    rows: list[ThresholdRowOut] = Field(description="One per k = 1..N.")
