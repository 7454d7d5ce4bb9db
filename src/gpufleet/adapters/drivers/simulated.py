"""A simulated cluster: nodes with power, jobs, taints, faults and validation, on an injected clock.

It is the default driver, what the fleet simulator acts through, and what tests and the demo use. The world
(``SimulatedWorld``) is the physical truth that gpufleet cannot see directly: which node carries a fault, which has a
latent defect, when a job would finish. gpufleet only sees it through ``SimulatedDriver``, the same interface a Slurm
or Kubernetes cluster offers; the simulator also reaches into the world to make things break and get fixed.

Everything is lazy: a job's end, a reboot's completion or a validation pass are worked out when somebody looks, by
comparing times, so the world costs nothing while nobody touches a node. That is what lets a 12,500-node fleet run
for months of simulated time in seconds.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gpufleet.adapters.drivers.base import (
    MAINTENANCE_TAINT,
    CheckFailure,
    DrainStatus,
    NodeStatus,
    PassResult,
    PowerState,
    PowerStatus,
    RepairAction,
    Taint,
    UnknownNode,
    ValidationResult,
    ValidationRun,
    ValidationState,
    ValidationSuite,
    Work,
)
from gpufleet.domain.clock import Clock


@dataclass(frozen=True)
class Workload:
    """How busy a cluster keeps its nodes: what a drain waits for and what a failure destroys."""

    utilization: float = 0.9
    job_hours: float = 12.0
    job_nodes: int = 1
    teardown_minutes: float = 10.0
    """The longest an interrupted or cancelled job takes to leave the node (Slurm COMPLETING, pod termination)."""


@dataclass
class Fault:
    component: str
    kind: str
    """``hardware`` or ``software``."""
    action: RepairAction
    at: datetime
    code: str
    repair_seconds: float = 0.0
    """For faults a reboot or reimage clears: how long that takes on this node."""
    unreachable: bool = False
    remedy: str | None = None
    """The lightest automated fix that clears it: ``restart_app`` (the application failed, the GPU is fine) or
    ``reset_gpu``; a reboot clears either. ``None``: only what ``action`` says."""


@dataclass
class Job:
    id: str
    start: datetime
    end: datetime
    nodes: int
    interrupted: bool = False

    def as_work(self) -> Work:
        return Work(self.id, "job", self.start, self.end, self.nodes)


@dataclass
class _Run:
    suite: ValidationSuite
    started_at: datetime
    passes: tuple[PassResult, ...]
    """Every pass the run will have made when it ends, decided when it starts."""
    failures: tuple[CheckFailure, ...]

    @property
    def finished_at(self) -> datetime:
        return self.passes[-1].finished_at if self.passes else self.started_at


@dataclass
class SimNode:
    cluster: str
    name: str
    gpus: int
    workload: Workload
    free_since: datetime
    schedulable: bool = True
    reason: str | None = None
    taints: dict[str, Taint] = field(default_factory=dict)
    job: Job | None = None
    fault: Fault | None = None
    defect: bool = False
    """A latent defect: passes checks most of the time, fails in service later."""
    power: PowerState = PowerState.ON
    booted_at: datetime | None = None
    boot_ready_at: datetime | None = None
    reboot_pending: bool = False
    with_supplier: bool = False
    drain_deadline: datetime | None = None
    runs: dict[str, _Run] = field(default_factory=dict)
    reboots: int = 0


class SimulatedWorld:
    """Every simulated node of every simulated cluster, with one random stream so a seed fixes the outcome."""

    def __init__(
        self,
        clock: Clock,
        seed: int | str = 0,
        boot_minutes: tuple[float, float] = (8.0, 20.0),
        reboot_no_return: float = 0.0,
        detect_per_pass: float = 0.35,
        auto_register: bool = True,
        default_workload: Workload | None = None,
    ) -> None:
        self.clock = clock
        self.rng = random.Random(f"{seed}:world")
        self.boot_median, boot_p90 = boot_minutes
        self.boot_sigma = math.log(max(boot_p90, self.boot_median) / self.boot_median) / 1.2816
        self.reboot_no_return = reboot_no_return
        self.detect_per_pass = detect_per_pass
        self.auto_register = auto_register
        self.default_workload = default_workload or Workload(utilization=0.0)
        self.nodes: dict[tuple[str, str], SimNode] = {}
        self._seq = 0

    # -- the fleet ---------------------------------------------------------------------------------------------

    def add_node(self, cluster: str, name: str, gpus: int, workload: Workload | None = None) -> SimNode:
        node = SimNode(cluster, name, gpus, workload or self.default_workload, free_since=self.clock.now())
        self.nodes[(cluster, name)] = node
        return node

    def node(self, cluster: str, name: str) -> SimNode:
        node = self.nodes.get((cluster, name))
        if node is None:
            if not self.auto_register:
                raise UnknownNode(name, cluster)
            node = self.add_node(cluster, name, gpus=8)
        self._settle(node, self.clock.now())
        return node

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq}"

    # -- physics the simulator drives; gpufleet never calls these ----------------------------------------------

    def inject_fault(self, node: SimNode, fault: Fault) -> Job | None:
        """Break a node. Returns the job it interrupted, if one was running."""
        now = self.clock.now()
        self._settle(node, now)
        job = self.current_job(node, now)
        node.fault = fault
        if fault.unreachable:
            node.power = PowerState.UNKNOWN
        if job is None:
            return None
        job.interrupted = True
        job.end = now + timedelta(minutes=node.workload.teardown_minutes * self.rng.uniform(0.5, 1.0))
        return job

    def fix(self, node: SimNode) -> None:
        """A technician repaired the node in place (GPU reset, reseat, cable swap)."""
        node.fault = None
        node.defect = False
        if node.power is PowerState.UNKNOWN and not node.reboot_pending:
            node.power = PowerState.ON

    def hand_to_supplier(self, node: SimNode) -> None:
        node.with_supplier = True
        node.power = PowerState.OFF
        node.reboot_pending = False
        node.boot_ready_at = None
        node.job = None

    def replace_hardware(self, node: SimNode, defect: bool) -> None:
        """The supplier returned the node, repaired or swapped; ``defect`` says whether it hides a new problem."""
        now = self.clock.now()
        node.with_supplier = False
        node.fault = None
        node.defect = defect
        node.power = PowerState.ON
        node.booted_at = now
        node.reboot_pending = False
        node.boot_ready_at = None

    def set_defect(self, node: SimNode, defect: bool) -> None:
        node.defect = defect

    # -- lazy evaluation ---------------------------------------------------------------------------------------

    def _settle(self, node: SimNode, now: datetime) -> None:
        if node.reboot_pending and node.boot_ready_at is not None and now >= node.boot_ready_at:
            node.reboot_pending = False
            node.booted_at = node.boot_ready_at
            node.boot_ready_at = None
            node.power = PowerState.ON
            fault = node.fault
            if fault is not None and (fault.action in (RepairAction.REBOOT, RepairAction.REIMAGE) or fault.remedy):
                node.fault = None

    def reachable(self, node: SimNode) -> bool:
        return node.power is PowerState.ON and not node.reboot_pending

    def current_job(self, node: SimNode, now: datetime) -> Job | None:
        """The job running on the node now, drawing the next one from the workload when the last has ended.

        Durations and idle gaps are exponential, so the state at any instant can be drawn directly from the
        stationary mix (busy with probability ``utilization``; age and remaining time independent) instead of
        replaying every job since the node was last looked at.
        """
        job = node.job
        if job is not None and job.end > now:
            return job if job.start <= now else None
        wl = node.workload
        if (
            not node.schedulable
            or node.fault is not None
            or not self.reachable(node)
            or wl.utilization <= 0
            or wl.job_hours <= 0
        ):
            return None
        mean = wl.job_hours * 3600.0
        if wl.utilization < 1.0 and self.rng.random() >= wl.utilization:
            idle_mean = mean * (1.0 - wl.utilization) / wl.utilization
            start = now + timedelta(seconds=self.rng.expovariate(1.0 / idle_mean))
            end = start + timedelta(seconds=self.rng.expovariate(1.0 / mean))
            node.job = Job(self._next_id("job"), start, end, wl.job_nodes)
            return None
        age = self.rng.expovariate(1.0 / mean)
        start = max(node.free_since, now - timedelta(seconds=age))
        end = now + timedelta(seconds=self.rng.expovariate(1.0 / mean))
        node.job = Job(self._next_id("job"), start, end, wl.job_nodes)
        return node.job

    def boot_seconds(self, node: SimNode) -> float:
        fault = node.fault
        if fault is not None and fault.action in (RepairAction.REBOOT, RepairAction.REIMAGE) and fault.repair_seconds:
            return fault.repair_seconds
        return 60.0 * self.boot_median * math.exp(self.boot_sigma * self.rng.gauss(0.0, 1.0))


class SimulatedDriver:
    """The ``ClusterDriver`` of one simulated cluster. Behaves like Slurm: drain waits for jobs, then kills them."""

    def __init__(self, world: SimulatedWorld, cluster: str) -> None:
        self.world = world
        self._cluster = cluster

    @property
    def cluster(self) -> str:
        return self._cluster

    def _node(self, name: str) -> SimNode:
        return self.world.node(self._cluster, name)

    def cordon(self, node: str, reason: str) -> None:
        n = self._node(node)
        self.world.current_job(n, self.world.clock.now())  # what runs now keeps running
        n.schedulable = False
        n.reason = reason

    def uncordon(self, node: str, reason: str) -> None:
        n = self._node(node)
        now = self.world.clock.now()
        if not n.schedulable:
            n.schedulable = True
            n.free_since = now
            if n.job is not None and n.job.start > now:
                n.job = None  # a start that was only planned while the node was cordoned
        n.reason = None
        n.drain_deadline = None

    def drain(self, node: str, reason: str, deadline: datetime) -> DrainStatus:
        n = self._node(node)
        now = self.world.clock.now()
        job = self.world.current_job(n, now)
        n.schedulable = False
        n.reason = reason
        if n.drain_deadline is None or deadline < n.drain_deadline:
            n.drain_deadline = deadline
        if job is None:
            return DrainStatus(node, n.drain_deadline)
        if not self.world.reachable(n):
            # The scheduler gives up on a node that stopped answering and ends its jobs (Slurm: DOWN).
            job.interrupted = True
            job.end = now
            return DrainStatus(node, n.drain_deadline, forced=(job.as_work(),))
        if now >= n.drain_deadline:
            if not job.interrupted:
                job.interrupted = True
                job.end = now + timedelta(minutes=n.workload.teardown_minutes * self.world.rng.random())
                return DrainStatus(node, n.drain_deadline, remaining=(job.as_work(),), forced=(job.as_work(),))
            return DrainStatus(node, n.drain_deadline, remaining=(job.as_work(),))
        return DrainStatus(node, n.drain_deadline, remaining=(job.as_work(),))

    def set_maintenance_taint(self, node: str, reason: str) -> None:
        self._node(node).taints[MAINTENANCE_TAINT] = Taint(MAINTENANCE_TAINT, reason[:63])

    def clear_maintenance_taint(self, node: str) -> None:
        self._node(node).taints.pop(MAINTENANCE_TAINT, None)

    def reboot(self, node: str, reason: str) -> None:
        n = self._node(node)
        if n.reboot_pending or n.with_supplier:
            return
        now = self.world.clock.now()
        job = self.world.current_job(n, now)
        if job is not None:
            job.interrupted = True
            job.end = now
        n.reboots += 1
        n.reboot_pending = True
        n.power = PowerState.OFF
        if n.fault is not None and n.fault.kind == "hardware" and n.fault.unreachable:
            n.boot_ready_at = None  # dead hardware does not come back by itself
        elif self.world.rng.random() < self.world.reboot_no_return:
            n.boot_ready_at = None
            n.fault = Fault("did not return from reboot", "hardware", RepairAction.RMA, now, "NO_RETURN", 0.0, True)
        else:
            n.boot_ready_at = now + timedelta(seconds=self.world.boot_seconds(n))

    def reset_gpu(self, node: str, gpu_index: int | None, reason: str) -> None:
        """``nvidia-smi -r``: clears what a GPU reset clears; whatever ran on the GPU is gone."""
        n = self._node(node)
        if n.fault is not None and n.fault.remedy in ("restart_app", "reset_gpu") and self.world.reachable(n):
            n.fault = None

    def restart_workload(self, node: str, reason: str) -> None:
        """Restart the node's GPU services and requeue its work: clears an application's own failure."""
        n = self._node(node)
        if n.fault is not None and n.fault.remedy == "restart_app" and self.world.reachable(n):
            n.fault = None

    def power_status(self, node: str) -> PowerStatus:
        n = self._node(node)
        power = n.power
        if n.reboot_pending and n.boot_ready_at is None:
            power = PowerState.UNKNOWN
        return PowerStatus(node, power, self.world.reachable(n), n.booted_at, n.reboot_pending)

    def start_validation(self, node: str, suite: ValidationSuite) -> ValidationRun:
        """Decide the whole run now (the world is seeded); results appear as the passes' times go by."""
        n = self._node(node)
        now = self.world.clock.now()
        run_id = self.world._next_id(f"{node}/val")
        rng = self.world.rng
        passes = max(1, suite.passes)
        failing_at: int | None = None
        failure: CheckFailure | None = None
        if not self.world.reachable(n):
            failure = CheckFailure(
                suite.checks[0] if suite.checks else suite.name, "UNREACHABLE", "no answer", RepairAction.RMA
            )
            failing_at = 0
        elif n.fault is not None and n.fault.remedy != "restart_app":
            # An application's own failure leaves the GPUs healthy: diagnostics pass.
            check = _failing_check(suite, n.fault.component)
            failure = CheckFailure(check, n.fault.code, n.fault.component, n.fault.action)
            failing_at = 1
        elif n.defect:
            for k in range(1, passes + 1):
                if rng.random() < self.world.detect_per_pass:
                    check = _failing_check(suite, "intermittent defect")
                    failure = CheckFailure(check, "DEFECT", "intermittent hardware defect", RepairAction.RMA)
                    failing_at = k
                    # Once seen, the defect is a known fault: diagnostics will find it again.
                    n.fault = Fault("intermittent defect", "hardware", RepairAction.RMA, now, "DEFECT")
                    n.defect = False
                    break
        results = []
        count = passes if failing_at is None else failing_at
        step = timedelta(minutes=suite.pass_minutes)
        for number in range(1, count + 1):
            failed_check = failure.check if failure is not None and number == failing_at else None
            checks = {c: _measure(rng, suite, c, c == failed_check) for c in suite.checks}
            started = now + step * (number - 1)
            results.append(PassResult(number, started, started + step, failed_check is None, checks))
        run = _Run(suite, now, tuple(results), (failure,) if failure is not None else ())
        n.runs = {run_id: run}  # one suite at a time on a node: only the latest run is kept
        return ValidationRun(run_id, node, suite.name, now, run.finished_at)

    def validation_result(self, node: str, run_id: str) -> ValidationResult:
        n = self._node(node)
        run = n.runs.get(run_id)
        if run is None:
            raise UnknownNode(f"{node} (validation run {run_id})", self._cluster)
        now = self.world.clock.now()
        done = tuple(p for p in run.passes if p.finished_at <= now)
        if now < run.finished_at:
            return ValidationResult(run_id, node, run.suite.name, ValidationState.RUNNING, len(done), passes=done)
        state = ValidationState.FAILED if run.failures else ValidationState.PASSED
        return ValidationResult(
            run_id, node, run.suite.name, state, len(run.passes), run.failures, run.finished_at, run.passes
        )

    def node_status(self, node: str) -> NodeStatus:
        n = self._node(node)
        now = self.world.clock.now()
        job = self.world.current_job(n, now)
        running = (job.as_work(),) if job is not None else ()
        reachable = self.world.reachable(n)
        base = ("COMPLETING" if job.interrupted else "ALLOCATED") if job else "IDLE"
        if not reachable:
            base = "DOWN"
        flags = []
        if not n.schedulable:
            flags.append("DRAIN")
        if MAINTENANCE_TAINT in n.taints:
            flags.append("MAINTENANCE")
        if n.reboot_pending:
            flags.append("REBOOT_ISSUED")
        if not reachable:
            flags.append("NOT_RESPONDING")
        return NodeStatus(
            node=node,
            schedulable=n.schedulable,
            power=self.power_status(node),
            taints=tuple(n.taints.values()),
            running=running,
            native_state="+".join([base, *flags]),
            reason=n.reason,
            draining=not n.schedulable and bool(running),
        )


_NETWORK = ("Network", "NIC", "cable", "Switch")


def _failing_check(suite: ValidationSuite, component: str) -> str:
    """The check a fault shows up in: network faults in the fabric bandwidth test, the rest in GPU diagnostics."""
    if any(word in component for word in _NETWORK):
        for check in suite.checks:
            if check in suite.floors and ("ib" in check or "net" in check):
                return check
    if component == "intermittent defect":
        for check in reversed(suite.checks):
            if check not in suite.floors:
                return check  # a burn-in catches what short diagnostics miss
    for check in suite.checks:
        if check not in suite.floors:
            return check
    return suite.checks[0] if suite.checks else suite.name


def _measure(rng: random.Random, suite: ValidationSuite, check: str, failed: bool) -> str | float:
    floor = suite.floors.get(check)
    if floor is None:
        return "fail" if failed else "pass"
    factor = rng.uniform(0.55, 0.95) if failed else rng.uniform(1.02, 1.15)
    return round(floor * factor, 1)
