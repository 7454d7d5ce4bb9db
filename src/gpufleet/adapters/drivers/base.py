"""The one boundary through which gpufleet acts on a cluster.

Every operation is named for what an operator asks of the cluster, not for how a scheduler spells it, so that Slurm
(``scontrol update state=drain``, ``scontrol reboot ASAP nextstate=RESUME``), Kubernetes (``spec.unschedulable``,
the Eviction API, taints) and the simulated cluster all fit behind it:

- Long operations (drain, reboot, validation) are started and then observed, because on a real cluster they take
  minutes to days and a controller must not block on them. Starting one twice is harmless.
- A drain carries a deadline: before it, running work is left to finish (Slurm DRAINING, Kubernetes evictions
  refused by a PodDisruptionBudget); after it, the driver ends what is left (``scancel``, pod deletion).
- Nodes are addressed by the name the cluster knows them by (Slurm NodeName, Kubernetes node name), which gpufleet
  stores as the node's hostname.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

MAINTENANCE_TAINT = "gpufleet.io/maintenance"
"""The taint key gpufleet owns; a Slurm driver maps it to the MAINTENANCE flag or a maint reservation."""


class PowerState(StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"
    """The BMC or provider API did not answer: the node may be on, off or gone."""


class RepairAction(StrEnum):
    """What a failed check recommends, in escalating order (DCGM severities map onto these)."""

    NONE = "none"
    RESET = "reset"
    """Reset the GPU or reseat a part: done by the operator's own staff."""
    REBOOT = "reboot"
    REIMAGE = "reimage"
    RMA = "rma"
    """The hardware must go back to the supplier."""


class ValidationState(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class Work:
    """A job (Slurm) or pod (Kubernetes) on a node: what a drain waits for and a failure interrupts."""

    id: str
    kind: str
    started_at: datetime
    expected_end: datetime | None = None
    """Slurm's EndTime when known; Kubernetes pods have none."""
    nodes: int = 1
    """How many nodes the whole job spans, so one node's failure can be weighed in lost work."""


@dataclass(frozen=True)
class DrainStatus:
    node: str
    deadline: datetime
    remaining: tuple[Work, ...] = ()
    forced: tuple[Work, ...] = ()
    """Work the driver ended because the deadline passed."""

    @property
    def complete(self) -> bool:
        return not self.remaining


@dataclass(frozen=True)
class PowerStatus:
    node: str
    power: PowerState
    reachable: bool
    booted_at: datetime | None = None
    reboot_pending: bool = False
    """A reboot was asked for and the node has not come back from it yet."""


@dataclass(frozen=True)
class ValidationSuite:
    """A named set of checks run ``passes`` times in a row; the first failing pass ends the run."""

    name: str
    checks: tuple[str, ...]
    passes: int = 1
    pass_minutes: float = 10.0
    floors: Mapping[str, float] = field(default_factory=dict)
    """Minimums for measured checks (e.g. NCCL bus bandwidth), for drivers whose tools judge pass or fail."""


@dataclass(frozen=True)
class CheckFailure:
    check: str
    code: str
    message: str
    action: RepairAction


@dataclass(frozen=True)
class PassResult:
    """One pass of a validation run: what each check measured or decided."""

    number: int
    started_at: datetime
    finished_at: datetime
    passed: bool
    checks: Mapping[str, str | float | bool]


@dataclass(frozen=True)
class ValidationRun:
    run_id: str
    node: str
    suite: str
    started_at: datetime
    expected_end: datetime | None = None


@dataclass(frozen=True)
class ValidationResult:
    run_id: str
    node: str
    suite: str
    state: ValidationState
    passes_completed: int = 0
    failures: tuple[CheckFailure, ...] = ()
    finished_at: datetime | None = None
    passes: tuple[PassResult, ...] = ()
    """Every completed pass, in order, with its check values: what gets recorded as validation history."""

    @property
    def recommended_action(self) -> RepairAction:
        """The strongest action any failed check asks for."""
        order = list(RepairAction)
        return max((f.action for f in self.failures), key=order.index, default=RepairAction.NONE)


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True)
class NodeStatus:
    node: str
    schedulable: bool
    power: PowerStatus
    taints: tuple[Taint, ...] = ()
    running: tuple[Work, ...] = ()
    native_state: str = ""
    """The scheduler's own words, e.g. Slurm ``IDLE+DRAIN`` or Kubernetes ``Ready,SchedulingDisabled``."""
    reason: str | None = None
    draining: bool = False
    extra: dict[str, str] = field(default_factory=dict)


class DriverError(Exception):
    """An operation the cluster refused or could not do. ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, node: str | None = None, retryable: bool = False) -> None:
        self.node = node
        self.retryable = retryable
        super().__init__(message)


class UnknownNode(DriverError):
    def __init__(self, node: str, cluster: str) -> None:
        super().__init__(f"cluster '{cluster}' has no node named '{node}'", node=node)


@runtime_checkable
class ClusterDriver(Protocol):
    """How gpufleet acts on one cluster. Every method is idempotent: asking twice is the same as asking once."""

    @property
    def cluster(self) -> str: ...

    def cordon(self, node: str, reason: str) -> None:
        """Stop new work landing; running work continues (Slurm drain reason set, Kubernetes unschedulable)."""

    def uncordon(self, node: str, reason: str) -> None:
        """Let work land again (Slurm ``state=resume``, Kubernetes unschedulable false)."""

    def drain(self, node: str, reason: str, deadline: datetime) -> DrainStatus:
        """Cordon and move work off; returns what still runs. After ``deadline`` the remaining work is ended."""

    def set_maintenance_taint(self, node: str, reason: str) -> None:
        """Mark the node as held for maintenance so no scheduler, autoscaler or tenant treats it as spare."""

    def clear_maintenance_taint(self, node: str) -> None: ...

    def reboot(self, node: str, reason: str) -> None:
        """Ask for a reboot; it completes later, observed through ``power_status``. Running work is ended."""

    def power_status(self, node: str) -> PowerStatus: ...

    def start_validation(self, node: str, suite: ValidationSuite) -> ValidationRun: ...

    def validation_result(self, node: str, run_id: str) -> ValidationResult: ...

    def node_status(self, node: str) -> NodeStatus: ...


class SiteValidation:
    """For schedulers that run no validation suites of their own: the site's tooling runs them and its results
    reach gpufleet through ``gpufleet validation ingest``, so the driver says that instead of pretending to run one."""

    scheduler: str
    """The scheduler's name as an error names it ("Slurm", "Kubernetes")."""
    _cluster: str

    def start_validation(self, node: str, suite: ValidationSuite) -> ValidationRun:
        raise DriverError(
            f"the {self.scheduler} driver does not run validation suites on '{self._cluster}'; run them with the "
            "site's tooling and record the results with `gpufleet validation ingest`",
            node=node,
        )

    def validation_result(self, node: str, run_id: str) -> ValidationResult:
        raise DriverError(f"the {self.scheduler} driver keeps no validation runs (asked for {run_id})", node=node)
