"""Scenario files: the fleet, its failure model, the policies and the duration of one simulation.

A scenario is YAML (or JSON). Shipped ones live beside this module and are named without their extension
(``demo``, ``llama3``, ``fleet-100k``); anything else is a path. Every problem is reported with the file, the line and
the dotted field, because a scenario is something people edit by hand to try a policy before it goes live.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpufleet.adapters.formats.documents import DocumentError, load_document
from gpufleet.domain.validation import PolicyError, ValidationPolicy, change_policy
from gpufleet.sim.calibration import CALIBRATIONS, load_calibration

SCENARIO_DIR = Path(__file__).parent / "scenarios"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"


class ScenarioError(ValueError):
    """A scenario that cannot run, naming where: file, line and field."""

    def __init__(self, message: str, source: str, line: int | None = None, field: str | None = None) -> None:
        self.source = source
        self.line = line
        self.field = field
        where = source + (f", line {line}" if line else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Spread(_Spec):
    """A positive, right-skewed duration: log-normal with this median and 90th percentile."""

    median: float = Field(gt=0)
    p90: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Spread:
        if self.p90 < self.median:
            raise ValueError("p90 must be at least the median")
        return self


class Window(_Spec):
    min: float = Field(ge=0)
    max: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.max < self.min:
            raise ValueError("max must be at least min")
        return self


class RmaDays(_Spec):
    """Supplier turnaround: next business day with advance replacement, otherwise a few days to two weeks."""

    next_day_share: float = Field(default=0.25, ge=0, le=1)
    min: float = Field(default=3.0, gt=0)
    max: float = Field(default=14.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> RmaDays:
        if self.max < self.min:
            raise ValueError("max must be at least min")
        return self


class SupplierSpec(_Spec):
    name: str = Field(pattern=NAME, max_length=100)
    kind: Literal["cloud", "vendor", "colo", "internal"]


class SkuSpec(_Spec):
    name: str = Field(pattern=NAME, max_length=100)
    gpu_vendor: str = Field(min_length=1, max_length=40)
    gpu_model: str = Field(min_length=1, max_length=60)
    gpus_per_node: int = Field(ge=1, le=1024)
    gpu_memory_gb: int = Field(ge=0, le=100_000)


class NodeGroup(_Spec):
    sku: str
    count: int = Field(ge=1, le=200_000)
    nodes_per_rack: int = Field(default=16, ge=1, le=1000)
    nvlink_domain_size: int | None = Field(default=None, ge=1, le=1000)
    """Nodes per NVLink domain (18 trays for an NVL72 rack); none for nodes whose NVLink stays inside the node."""
    nvlink_domain_kind: str | None = Field(default=None, max_length=40)


class WorkloadSpec(_Spec):
    utilization: float = Field(default=0.9, ge=0, le=1)
    job_hours: float = Field(default=12.0, gt=0)
    job_nodes: int = Field(default=1, ge=1, le=100_000)
    checkpoint_minutes: float = Field(default=30.0, gt=0)
    restart_minutes: float = Field(default=10.0, ge=0)
    """Time an interrupted job spends getting back to where it was, on top of the work since its checkpoint."""
    teardown_minutes: float = Field(default=10.0, ge=0)
    """A job hit by a fault hangs until its collective timeout ends it (NCCL's default is 10 minutes)."""


class ClusterSpec(_Spec):
    name: str = Field(pattern=NAME, max_length=100)
    supplier: str
    kind: Literal["kubernetes", "slurm", "slurm-on-kubernetes", "bare-metal"]
    role: Literal["frontier", "fleet"]
    stack: str | None = Field(default=None, max_length=100)
    nodes: list[NodeGroup] = Field(min_length=1)
    workload: WorkloadSpec = WorkloadSpec()
    tenants: list[str] = Field(default_factory=list)
    """Tenants the cluster's nodes are allocated to, round robin; none leaves them unallocated."""


class FleetSpec(_Spec):
    suppliers: list[SupplierSpec] = Field(min_length=1)
    skus: list[SkuSpec] = Field(min_length=1)
    clusters: list[ClusterSpec] = Field(min_length=1)


class Profile(_Spec):
    """How a supplier or a SKU departs from the calibration data."""

    hardware_factor: float = Field(default=1.0, ge=0)
    software_factor: float = Field(default=1.0, ge=0)
    validation_failure: float = Field(default=0.0, ge=0, le=1)
    """Chance that a node coming back from the supplier (or new) hides a defect validation can find."""
    reban: float = Field(default=0.0, ge=0, le=1)
    """Chance that a node admitted after a hardware repair is banned again within the re-ban window."""
    rma_days: RmaDays | None = None


class ComponentSpec(_Spec):
    factor: float = Field(default=1.0, ge=0)
    in_house_share: float | None = Field(default=None, ge=0, le=1)


class RepairSpec(_Spec):
    software_minutes: Spread = Spread(median=15, p90=45)
    hardware_in_house_share: float = Field(default=0.3, ge=0, le=1)
    hardware_in_house_hours: Spread = Spread(median=4, p90=12)
    rma_days: RmaDays = RmaDays()
    boot_minutes: Spread = Spread(median=8, p90=20)
    reboot_no_return: float = Field(default=0.02, ge=0, le=1)
    restart_app_share: float = Field(default=0.8, ge=0, le=1)
    """Share of the job's own software faults (bugs, collective timeouts) that restarting the job gets past."""
    gpu_reset_share: float = Field(default=0.6, ge=0, le=1)
    """Share of the GPU faults repaired in house that a GPU reset clears (the Xid catalog's RESET_GPU); the rest
    need hands on the part."""


class FailureSpec(_Spec):
    calibration: str = "llama3"
    scale: float = Field(default=1.0, ge=0)
    suppliers: dict[str, Profile] = Field(default_factory=dict)
    skus: dict[str, Profile] = Field(default_factory=dict)
    components: dict[str, ComponentSpec] = Field(default_factory=dict)
    repair: RepairSpec = RepairSpec()
    detect_per_pass: float = Field(default=0.35, gt=0, le=1)
    reban_window_days: float = Field(default=7.0, gt=0)
    """A hardware failure this soon after a hardware repair counts as a re-ban, whatever its cause."""
    reban_mean_days: float = Field(default=2.0, gt=0)


class ValidationSpec(_Spec):
    """The clusters' validation policy (see ``gpufleet validation policy``); unset fields keep the product default."""

    fast_track_days: int | None = None
    fast_track_suite: str | None = None
    fast_track_passes: int | None = None
    slow_path_suite: str | None = None
    slow_path_passes: int | None = None
    diagnostics_minutes: float = Field(default=15.0, gt=0)
    """Diagnostics after a fault (DCGM level 3), before a repair is chosen."""

    def changes(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"diagnostics_minutes"}).items() if v is not None}


class PolicySpec(_Spec):
    detection_minutes: Window = Window(min=1, max=6)
    poll_minutes: float = Field(default=5.0, gt=0)
    provision_hours: Spread = Spread(median=1.5, p90=3)
    validation: ValidationSpec = ValidationSpec()
    step_minutes: float = Field(default=15.0, gt=0, le=1440)
    """One database transaction holds every change of one step, like one pass of a controller."""


class Delivery(_Spec):
    day: float = Field(ge=0)
    cluster: str
    sku: str
    count: int = Field(ge=1, le=100_000)


class Scenario(_Spec):
    name: str = Field(pattern=NAME, max_length=100)
    description: str = ""
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    duration_days: float = Field(gt=0, le=3650)
    seed: int = 1
    fleet: FleetSpec
    failures: FailureSpec = FailureSpec()
    policies: PolicySpec = PolicySpec()
    deliveries: list[Delivery] = Field(default_factory=list)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give the start with a time zone, e.g. 2026-01-05T00:00:00Z")
        return value.astimezone(UTC)

    @property
    def nodes(self) -> int:
        return sum(g.count for c in self.fleet.clusters for g in c.nodes)

    @property
    def gpus(self) -> int:
        per_node = {s.name: s.gpus_per_node for s in self.fleet.skus}
        return sum(g.count * per_node[g.sku] for c in self.fleet.clusters for g in c.nodes)


def shipped_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def resolve(ref: str) -> Path:
    """A shipped scenario's name, or a path to a scenario file."""
    shipped = SCENARIO_DIR / f"{ref}.yaml"
    if "/" not in ref and "\\" not in ref and shipped.is_file():
        return shipped
    path = Path(ref)
    if path.is_file():
        return path
    raise ScenarioError(f"no such scenario; shipped: {', '.join(shipped_scenarios())}, or give a file path", ref)


def load_scenario(ref: str) -> Scenario:
    path = resolve(ref)
    source = str(path) if path.parent != SCENARIO_DIR else f"{path.stem} ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read the file: {exc}", source) from None
    return parse_scenario(text, source, path.name)


def parse_scenario(text: str, source: str = "<scenario>", filename: str = "scenario.yaml") -> Scenario:
    try:
        data, line_of = load_document(text, filename)
    except DocumentError as exc:
        message = str(exc).split(": ", 1)[-1]
        raise ScenarioError(message, source, exc.line) from None
    if not isinstance(data, dict):
        raise ScenarioError("a scenario must be a mapping with name, duration_days and fleet", source, 1)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ScenarioError(err["msg"] + more, source, line_of(loc), _dotted(loc)) from None
    problem = _cross_check(scenario)
    if problem is not None:
        loc, message = problem
        raise ScenarioError(message, source, line_of(loc), _dotted(loc))
    return scenario


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")


def _duplicate(names: list[str]) -> int | None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            return i
        seen.add(name)
    return None


def _cross_check(s: Scenario) -> tuple[tuple[Any, ...], str] | None:
    """References between sections: every name used must be declared, and declared once."""
    fleet = s.fleet
    suppliers = [x.name for x in fleet.suppliers]
    skus = [x.name for x in fleet.skus]
    clusters = [x.name for x in fleet.clusters]
    for section, names in (("suppliers", suppliers), ("skus", skus), ("clusters", clusters)):
        dup = _duplicate(names)
        if dup is not None:
            return ("fleet", section, dup, "name"), f"'{names[dup]}' is declared twice"
    for i, c in enumerate(fleet.clusters):
        if c.supplier not in suppliers:
            return ("fleet", "clusters", i, "supplier"), f"unknown supplier '{c.supplier}'; declared: {suppliers}"
        for j, group in enumerate(c.nodes):
            if group.sku not in skus:
                return ("fleet", "clusters", i, "nodes", j, "sku"), f"unknown SKU '{group.sku}'; declared: {skus}"
    for name in s.failures.suppliers:
        if name not in suppliers:
            return ("failures", "suppliers", name), f"unknown supplier '{name}'; declared: {suppliers}"
    for name in s.failures.skus:
        if name not in skus:
            return ("failures", "skus", name), f"unknown SKU '{name}'; declared: {skus}"
    if s.failures.calibration not in CALIBRATIONS:
        return ("failures", "calibration"), f"unknown calibration; shipped: {sorted(CALIBRATIONS)}"
    components = [c.name for c in load_calibration(s.failures.calibration).components]
    for name in s.failures.components:
        if name not in components:
            return ("failures", "components", name), f"unknown component '{name}'; known: {components}"
    problem = _check_validation_policy(s)
    if problem is not None:
        return problem
    for i, d in enumerate(s.deliveries):
        if d.cluster not in clusters:
            return ("deliveries", i, "cluster"), f"unknown cluster '{d.cluster}'; declared: {clusters}"
        if d.sku not in skus:
            return ("deliveries", i, "sku"), f"unknown SKU '{d.sku}'; declared: {skus}"
    return None


def _check_validation_policy(s: Scenario) -> tuple[tuple[Any, ...], str] | None:
    try:
        change_policy(ValidationPolicy(), s.policies.validation.changes())
    except PolicyError as exc:
        return ("policies", "validation", exc.field), str(exc).split(": ", 1)[-1]
    return None
