"""Validation gating rules: which checks a suite runs, which path a node takes, and what a result record must say.

Pure, like the lifecycle table: services gather the facts (a node's history, its cluster's policy, its SKU's
criteria) and these functions decide. Nothing here reads a clock; ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from gpufleet.domain.inventory_rows import RowError


class CheckKind(StrEnum):
    VERDICT = "verdict"
    """The tool passes or fails the node itself (DCGM diagnostics, burn-in): the value is true/false or pass/fail."""
    MINIMUM = "minimum"
    """A measurement judged against the SKU's floor (bandwidths): the value is a number."""


@dataclass(frozen=True)
class Check:
    name: str
    kind: CheckKind
    minutes: float
    """Nominal wall time of one run, used to plan passes and by the simulated driver."""
    doc: str
    unit: str | None = None


CHECKS: Mapping[str, Check] = {
    c.name: c
    for c in (
        Check("dcgm_r1", CheckKind.VERDICT, 0.5, "dcgmi diag -r 1: software, drivers, persistence, page retirement"),
        Check("dcgm_r2", CheckKind.VERDICT, 2, "dcgmi diag -r 2: r1 plus memory and PCIe/NVLink"),
        Check("dcgm_r3", CheckKind.VERDICT, 15, "dcgmi diag -r 3: r2 plus targeted stress, power, memory bandwidth"),
        Check("dcgm_r4", CheckKind.VERDICT, 45, "dcgmi diag -r 4: r3 plus memtest and pulse test"),
        Check(
            "nccl_allreduce_busbw_gbps",
            CheckKind.MINIMUM,
            5,
            "nccl-tests all_reduce_perf across the node's GPUs: bus bandwidth",
            "GB/s",
        ),
        Check("ib_bw_gbps", CheckKind.MINIMUM, 5, "ib_write_bw with GPUDirect per HCA: bandwidth", "Gb/s"),
        Check("host_gpu_bw_gbps", CheckKind.MINIMUM, 2, "host <-> GPU copy bandwidth (nvbandwidth)", "GB/s"),
        Check("gpu_burn", CheckKind.VERDICT, 30, "gpu-burn sustained load: no compute errors, no throttling"),
    )
}


@dataclass(frozen=True)
class Suite:
    name: str
    checks: tuple[str, ...]
    doc: str

    @property
    def minutes(self) -> float:
        return sum(CHECKS[c].minutes for c in self.checks)


SUITES: Mapping[str, Suite] = {
    s.name: s
    for s in (
        Suite("quick", ("dcgm_r2",), "the fast track: hardware that was healthy here and has not changed"),
        Suite(
            "full",
            ("dcgm_r3", "nccl_allreduce_busbw_gbps", "ib_bw_gbps", "gpu_burn"),
            "the slow path: new or repaired hardware, and canaries",
        ),
        Suite(
            "extended",
            ("dcgm_r4", "nccl_allreduce_busbw_gbps", "ib_bw_gbps", "host_gpu_bw_gbps", "gpu_burn"),
            "the slow path with memtest and pulse test, for suspect batches",
        ),
    )
}


class ValidationPath(StrEnum):
    FAST_TRACK = "fast_track"
    SLOW_PATH = "slow_path"
    CANARY = "canary"


FULL_PATHS: frozenset[ValidationPath] = frozenset({ValidationPath.SLOW_PATH, ValidationPath.CANARY})
"""Paths that run every pass of the full suite: the history the threshold simulator learns from."""


# ---------------------------------------------------------------------------------------------------------------
# Per-cluster policy.


class PolicyError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"field '{field}': {message}")


@dataclass(frozen=True)
class ValidationPolicy:
    """How one cluster validates nodes. Scoped to a cluster because nodes move between clusters."""

    fast_track_days: int = 30
    fast_track_suite: str = "quick"
    fast_track_passes: int = 1
    slow_path_suite: str = "full"
    slow_path_passes: int = 12
    canary_suite: str = "full"
    config_version: str | None = None
    """The cluster's configuration version; changing it sends a canary node through first."""

    def path_plan(self, path: ValidationPath) -> tuple[str, int]:
        """The suite and number of passes a path runs under this policy."""
        if path is ValidationPath.FAST_TRACK:
            return self.fast_track_suite, self.fast_track_passes
        if path is ValidationPath.CANARY:
            return self.canary_suite, self.slow_path_passes
        return self.slow_path_suite, self.slow_path_passes

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


POLICY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ValidationPolicy))
MAX_PASSES = 100


def _int_in(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PolicyError(field, f"expected a whole number from {low} to {high}")
    try:
        number = int(value)
    except ValueError:
        raise PolicyError(field, f"expected a whole number from {low} to {high}, got '{value}'") from None
    if not low <= number <= high:
        raise PolicyError(field, f"must be from {low} to {high}, got {number}")
    return number


def _suite(field: str, value: object) -> str:
    if not isinstance(value, str) or value not in SUITES:
        raise PolicyError(field, f"unknown suite '{value}'; expected one of: {', '.join(SUITES)}")
    return value


def change_policy(policy: ValidationPolicy, changes: Mapping[str, object]) -> ValidationPolicy:
    """A copy of ``policy`` with ``changes`` applied, refusing unknown fields and out-of-range values by name."""
    values: dict[str, Any] = {}
    for name, raw in changes.items():
        if name in ("fast_track_days",):
            values[name] = _int_in(name, raw, 0, 365)
        elif name in ("fast_track_passes", "slow_path_passes"):
            values[name] = _int_in(name, raw, 1, MAX_PASSES)
        elif name in ("fast_track_suite", "slow_path_suite", "canary_suite"):
            values[name] = _suite(name, raw)
        elif name == "config_version":
            if raw is not None and (not isinstance(raw, str) or not 0 < len(raw.strip()) <= 100):
                raise PolicyError(name, "expected text of 1 to 100 characters, or null to clear it")
            values[name] = raw.strip() if isinstance(raw, str) else None
        else:
            raise PolicyError(name, f"unknown policy field; expected one of: {', '.join(POLICY_FIELDS)}")
    return replace(policy, **values)


# ---------------------------------------------------------------------------------------------------------------
# Choosing the path.

HEALTHY_EXITS: frozenset[str] = frozenset({"drain"})
"""Events that take a node out of service without a suspected fault (planned work)."""
HARDWARE_EVENTS: frozenset[str] = frozenset({"repair", "repaired", "supplier_returned"})
"""Transitions that mean the hardware was worked on, so its earlier health no longer vouches for it."""


@dataclass(frozen=True)
class HistoryEvent:
    """The part of a node event that path selection reads."""

    at: datetime
    kind: str
    event: str | None
    from_state: str | None
    to_state: str | None
    cluster_id: int | None
    gpus_changed: bool = False


def last_healthy_in_cluster(events: Sequence[HistoryEvent], cluster_id: int, now: datetime) -> datetime | None:
    """When the node was last in service and healthy in ``cluster_id``: now if it still is, the time of a planned
    exit if that is how its last stay ended, and ``None`` if it never served there or left with a fault."""
    for e in sorted(events, key=lambda e: e.at, reverse=True):
        if e.kind != "transition" or e.cluster_id != cluster_id:
            continue
        if e.from_state == "in_service":
            return e.at if e.event in HEALTHY_EXITS else None
        if e.to_state == "in_service":
            return now
    return None


def hardware_changed_since(events: Iterable[HistoryEvent], since: datetime) -> bool:
    """A GPU serial change or a repair after ``since``."""
    return any(e.at > since and (e.gpus_changed or (e.event in HARDWARE_EVENTS)) for e in events)


@dataclass(frozen=True)
class NodeFacts:
    last_healthy: datetime | None
    hardware_changed: bool
    banned_since_healthy: bool
    canary_needed: bool
    """The cluster's configuration version is set and no attempt has passed under it yet."""
    canary_elsewhere: str | None = None
    """A different node already running the canary attempt for the current configuration."""


@dataclass(frozen=True)
class PathDecision:
    path: ValidationPath
    suite: str
    passes: int
    reason: str
    wait_for: str | None = None
    """Set when the node should wait for this canary node to pass first."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path.value,
            "suite": self.suite,
            "passes": self.passes,
            "checks": list(SUITES[self.suite].checks),
            "minutes_per_pass": SUITES[self.suite].minutes,
            "reason": self.reason,
            "wait_for": self.wait_for,
        }


def select_path(policy: ValidationPolicy, facts: NodeFacts, now: datetime) -> PathDecision:
    """Canary first after a configuration change; else the fast track for unchanged hardware that was healthy here
    within the policy's window; else the slow path. While another node is the canary, the others wait for it."""
    if facts.canary_needed and facts.canary_elsewhere is None:
        suite, passes = policy.path_plan(ValidationPath.CANARY)
        reason = f"configuration {policy.config_version} has no passing node yet: this node is its canary"
        return PathDecision(ValidationPath.CANARY, suite, passes, reason)
    path, reason = _fast_or_slow(policy, facts, now)
    suite, passes = policy.path_plan(path)
    wait = facts.canary_elsewhere if facts.canary_needed else None
    if wait is not None:
        reason += f"; first wait for canary {wait} to pass under configuration {policy.config_version}"
    return PathDecision(path, suite, passes, reason, wait)


def _fast_or_slow(policy: ValidationPolicy, facts: NodeFacts, now: datetime) -> tuple[ValidationPath, str]:
    if facts.last_healthy is None:
        return ValidationPath.SLOW_PATH, "new to this cluster, or its last stay here ended with a fault"
    if facts.hardware_changed:
        return ValidationPath.SLOW_PATH, "hardware changed (repair or GPU swap) since it was last healthy here"
    if facts.banned_since_healthy:
        return ValidationPath.SLOW_PATH, "banned since it was last healthy here"
    if now - facts.last_healthy > timedelta(days=policy.fast_track_days):
        return ValidationPath.SLOW_PATH, f"last healthy here more than {policy.fast_track_days} days ago"
    return (
        ValidationPath.FAST_TRACK,
        f"healthy in this cluster within {policy.fast_track_days} days, hardware unchanged",
    )


# ---------------------------------------------------------------------------------------------------------------
# Pass criteria per SKU.


@dataclass(frozen=True)
class Criteria:
    """Floors for measured checks on one GPU model, e.g. NCCL bus bandwidth at or above the published baseline."""

    gpu_model: str
    minimums: Mapping[str, float]
    source: str = ""


def criteria_failures(checks: Mapping[str, Any], criteria: Criteria | None) -> list[str]:
    """Why these check values fail the node: a verdict check that failed, or a measurement under its floor."""
    failures: list[str] = []
    for name, value in checks.items():
        check = CHECKS.get(name)
        if check is None or value is None:
            continue
        if check.kind is CheckKind.VERDICT:
            if not verdict(value):
                failures.append(f"{name} failed")
        elif criteria is not None and name in criteria.minimums:
            floor = criteria.minimums[name]
            if float(value) < floor:
                unit = f" {check.unit}" if check.unit else ""
                failures.append(f"{name} {value:g}{unit} is under the {criteria.gpu_model} floor of {floor:g}{unit}")
    return failures


def verdict(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("pass", "passed", "ok", "true")


# ---------------------------------------------------------------------------------------------------------------
# Result records.

REQUIRED_FIELDS: tuple[str, ...] = (
    "node",
    "cluster",
    "attempt",
    "pass_number",
    "suite",
    "started_at",
    "finished_at",
    "result",
)
OPTIONAL_FIELDS: tuple[str, ...] = ("checks", "path", "passes_required", "config_version")
KNOWN_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)
RESULTS = ("pass", "fail")
MAX_CHECKS = 64


@dataclass(frozen=True)
class ResultRecord:
    """One pass of one validation attempt, as a driver reports it."""

    line: int
    node: str
    cluster: str
    attempt: int
    pass_number: int
    suite: str
    started_at: datetime
    finished_at: datetime
    result: str
    checks: dict[str, Any]
    path: ValidationPath | None = None
    passes_required: int | None = None
    config_version: str | None = None

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def parse_time(value: object) -> datetime:
    """ISO 8601; a time without an offset is read as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected an ISO 8601 time such as 2026-03-02T09:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"'{value}' is not an ISO 8601 time such as 2026-03-02T09:00:00Z") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _positive(values: Mapping[str, Any], name: str, line: int, errors: list[RowError], high: int) -> int | None:
    raw = values.get(name)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= high:
        errors.append(RowError(line, name, f"expected a whole number from 1 to {high}, got {raw!r}"))
        return None
    return raw


def _name(values: Mapping[str, Any], name: str, line: int, errors: list[RowError]) -> str | None:
    raw = values.get(name)
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 255:
        errors.append(RowError(line, name, f"expected a name of 1 to 255 characters, got {raw!r}"))
        return None
    return raw.strip()


def _checks(raw: object, line: int, errors: list[RowError]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_CHECKS:
        errors.append(RowError(line, "checks", f"expected an object of at most {MAX_CHECKS} check results"))
        return {}
    for name, value in raw.items():
        check = CHECKS.get(name)
        if check is None:
            if len(str(name)) > 100 or not isinstance(value, str | int | float | bool | type(None)):
                errors.append(RowError(line, f"checks.{name}", "expected a short name with a plain value"))
            continue
        if check.kind is CheckKind.MINIMUM and (isinstance(value, bool) or not isinstance(value, int | float)):
            errors.append(RowError(line, f"checks.{name}", f"expected a number in {check.unit}, got {value!r}"))
        elif check.kind is CheckKind.VERDICT and not (
            isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("pass", "fail"))
        ):
            errors.append(RowError(line, f"checks.{name}", f"expected true/false or pass/fail, got {value!r}"))
    return dict(raw)


def read_record(line: int, values: Mapping[str, Any]) -> tuple[ResultRecord | None, list[RowError]]:
    """Check one result record on its own, naming every bad field, before anything is looked up."""
    errors: list[RowError] = []
    unknown = sorted(str(k) for k in values if k not in KNOWN_FIELDS)
    if unknown:
        errors.append(RowError(line, unknown[0], f"unknown field(s) {', '.join(unknown)}"))
    node = _name(values, "node", line, errors)
    cluster = _name(values, "cluster", line, errors)
    attempt = _positive(values, "attempt", line, errors, 1_000_000)
    pass_number = _positive(values, "pass_number", line, errors, MAX_PASSES)
    suite = values.get("suite")
    if suite not in SUITES:
        errors.append(RowError(line, "suite", f"unknown suite {suite!r}; expected one of: {', '.join(SUITES)}"))
    times: dict[str, datetime] = {}
    for name in ("started_at", "finished_at"):
        if values.get(name) in (None, ""):
            errors.append(RowError(line, name, "missing: every result needs started_at and finished_at"))
            continue
        try:
            times[name] = parse_time(values[name])
        except ValueError as exc:
            errors.append(RowError(line, name, str(exc)))
    if len(times) == 2 and times["finished_at"] < times["started_at"]:
        errors.append(RowError(line, "finished_at", "finishes before it starts"))
    result = values.get("result")
    result = result.strip().lower() if isinstance(result, str) else result
    if result not in RESULTS:
        errors.append(RowError(line, "result", f"expected 'pass' or 'fail', got {values.get('result')!r}"))
    checks = _checks(values.get("checks"), line, errors)
    path: ValidationPath | None = None
    if values.get("path") is not None:
        try:
            path = ValidationPath(values["path"])
        except ValueError:
            names = ", ".join(p.value for p in ValidationPath)
            errors.append(RowError(line, "path", f"unknown path {values['path']!r}; expected one of: {names}"))
    passes_required = None
    if values.get("passes_required") is not None:
        passes_required = _positive(values, "passes_required", line, errors, MAX_PASSES)
    config_version = values.get("config_version")
    if config_version is not None and (not isinstance(config_version, str) or not 0 < len(config_version) <= 100):
        errors.append(RowError(line, "config_version", "expected text of 1 to 100 characters"))
    if errors or node is None or cluster is None or attempt is None or pass_number is None:
        return None, errors
    record = ResultRecord(
        line=line,
        node=node,
        cluster=cluster,
        attempt=attempt,
        pass_number=pass_number,
        suite=str(suite),
        started_at=times["started_at"],
        finished_at=times["finished_at"],
        result=str(result),
        checks=checks,
        path=path,
        passes_required=passes_required,
        config_version=config_version,
    )
    if passes_required is not None and pass_number > passes_required:
        return None, [RowError(line, "pass_number", f"pass {pass_number} is beyond passes_required {passes_required}")]
    return record, []
