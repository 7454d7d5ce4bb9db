"""The discrete-event engine: simulated time, the event queue, and one database transaction per simulated step.

Simulated time is a float of seconds since the scenario's start; the services read it as an aware datetime from a
``ManualClock`` that the engine moves before each event, so recorded events carry simulated times. Events sit in a
``heapq`` ordered by time and then by insertion, which with seeded random streams makes a run repeatable.

Node state lives in the database: every change goes through ``fleet.lifecycle.apply_transition`` and writes its
event. The engine only keeps what it needs to act fast (the state each transition returned, the failure clock of each
node) and commits once per step (``policies.step_minutes``), like one pass of a controller, instead of once per event.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from gpufleet.adapters.drivers.base import ClusterDriver
from gpufleet.adapters.drivers.simulated import SimNode, SimulatedDriver, SimulatedWorld, Workload
from gpufleet.clusters.drivers import ClusterTarget, DriverRegistry
from gpufleet.domain.lifecycle import NodeState
from gpufleet.platform.clock import Clock, ManualClock
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, open_database
from gpufleet.remediation.engine import Engine as RemediationEngine
from gpufleet.remediation.runtime import TimeFrame
from gpufleet.reports.remediation import simulation_figures
from gpufleet.reports.sim_history import availability, cluster_nodes, node_count, node_states, state_counts
from gpufleet.sim import validation
from gpufleet.sim.failures import DAY, FailureClass, FailureModel
from gpufleet.sim.fleet import PlannedNode, load_nodes, load_reference, plan_delivery, plan_nodes
from gpufleet.sim.metrics import Metrics
from gpufleet.sim.operator import Case, Operator
from gpufleet.sim.scenario import Scenario
from gpufleet.validation.analytics import validation_figures
from gpufleet.validation.bans import record_ban

HEALTH = Actor(name="sim:health", role=Role.OPERATOR)
"""Who records the bans that hardware faults in service cause."""

DEFAULT_URL = "sqlite://"
"""An in-memory database: a simulation leaves nothing behind unless asked to."""

Progress = Callable[[float, float, int], None]
"""Called with (simulated days done, days in total, events processed)."""
Handler = Callable[["FleetNode", Any], None]


class SimulationError(RuntimeError):
    pass


class ScaledClock:
    """Wall-clock-like time for a live run: ``speed`` simulated seconds pass per recorded second.

    A live demo writes into the same database the API reads with the system clock, so what it records must be in
    the API's time, not in simulated time running ahead: a three-day RMA then shows as three days / ``speed``.
    """

    def __init__(self, simulated: ManualClock, origin: datetime, speed: float) -> None:
        self.simulated = simulated
        self.origin = origin
        self.speed = speed

    def now(self) -> datetime:
        return self.origin + (self.simulated.now() - self.origin) / self.speed


@dataclass(eq=False, slots=True)
class FleetNode:
    """The engine's handle on one node: where to reach it, and the state its last transition returned."""

    id: str
    hostname: str
    cluster: str
    supplier: str
    sku: str
    gpus: int
    cls: FailureClass
    driver: ClusterDriver
    body: SimNode
    state: str
    checkpoint_seconds: float
    restart_seconds: float
    gen: int = 0
    case: Case | None = None
    last_slow_admit: float | None = None


class UnitOfWork:
    """One open transaction at a time, committed at the end of each simulated step."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._context: AbstractContextManager[Session] | None = None
        self._session: Session | None = None
        self.commits = 0

    def session(self) -> Session:
        if self._session is None:
            self._context = self.db.transaction()
            self._session = self._context.__enter__()
        return self._session

    def commit(self) -> None:
        if self._context is not None:
            context, self._context, self._session = self._context, None, None
            context.__exit__(None, None, None)
            self.commits += 1

    def rollback(self, exc: BaseException) -> None:
        if self._context is not None:
            context, self._context, self._session = self._context, None, None
            context.__exit__(type(exc), exc, exc.__traceback__)


class StepWork:
    """The remediation controller's unit of work inside a simulation: the step's own transaction.

    Checkpoints need no commit here: a simulation that stops loses its in-memory world with it.
    """

    durable = False

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def session(self) -> Session:
        return self.uow.session()

    def checkpoint(self) -> None:
        return None


class Simulation:
    def __init__(
        self,
        scenario: Scenario,
        seed: int | None = None,
        days: float | None = None,
        db: Database | None = None,
        database_url: str | None = None,
        progress: Progress | None = None,
        live: bool = False,
        speed: float = 3600.0,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.days = scenario.duration_days if days is None else days
        if self.days <= 0:
            raise SimulationError("the number of days to simulate must be positive")
        self.duration = self.days * DAY
        self.live = live
        if live and speed <= 0:
            raise SimulationError("the speed of a live simulation must be positive")
        self.speed = speed if live else 1.0
        self.progress = progress
        self.clock = ManualClock(scenario.start)
        self.record_clock: Clock = ScaledClock(self.clock, scenario.start, self.speed) if live else self.clock
        self._db_given = db
        self._url = database_url
        self.db: Database = db  # type: ignore[assignment]  # set in prepare()
        self.t = 0.0
        self.events = 0
        self._heap: list[tuple[float, int, Handler, FleetNode | None, Any]] = []
        self._seq = 0
        repair = scenario.failures.repair
        self.world = SimulatedWorld(
            self.clock,
            seed=self.seed,
            boot_minutes=(repair.boot_minutes.median, repair.boot_minutes.p90),
            reboot_no_return=repair.reboot_no_return,
            detect_per_pass=scenario.failures.detect_per_pass,
            auto_register=False,
        )
        self.registry = DriverRegistry(self.clock)
        self.registry.register("simulated", lambda target, _clock: SimulatedDriver(self.world, target.name))
        self.model = FailureModel(scenario, self.seed)
        self.metrics = Metrics(self.model.calibration)
        self.operator = Operator(self)
        self.remediation = RemediationEngine(
            self.registry,
            self.record_clock,
            correlation_prefix=f"sim-{self.seed}",
            frame=TimeFrame(scenario.start, self.speed),
            owner=f"sim-{self.seed}",
            observer=self.operator,
            # A run of its own is one process whose overrides and breakers change only through it; a live demo
            # shares its database with the API, where people change them.
            leases=live,
            policy_ttl=timedelta(seconds=30) if live else timedelta(days=3650),
            # The simulated suppliers return hardware through the service, which wakes the case at once.
            supplier_poll=timedelta(days=14),
        )
        self._pass_at: float | None = None
        self._evidence = False
        self.nodes: list[FleetNode] = []
        self.by_id: dict[str, FleetNode] = {}
        self.state_nodes: Counter[str] = Counter()
        self.in_service_gpus = 0
        self.actor = Actor(name="sim:fleet-import", role=Role.OPERATOR, correlation_id=f"sim-{self.seed}-import")
        self._next_cluster_index: dict[str, int] = {}
        self._wall_start = 0.0
        self.setup_seconds = 0.0
        self.loop_seconds = 0.0
        self._next_day = DAY
        self._step = 60.0 * scenario.policies.step_minutes
        self._next_step = self._step
        self.uow: UnitOfWork

    # -- time ----------------------------------------------------------------------------------------------

    def at(self, t: float) -> datetime:
        return self.scenario.start + timedelta(seconds=t)

    def record_now(self) -> datetime:
        """The time written into events: simulated time, or wall time for a live demo beside a real API."""
        return self.record_clock.now()

    def to_record_time(self, when: datetime) -> datetime:
        """A simulated instant (e.g. a validation pass's end) as the time to write into history."""
        if self.record_clock is self.clock:
            return when
        return self.record_clock.now() + (when - self.clock.now()) / self.speed

    def schedule(self, delay: float, fn: Handler, node: FleetNode | None, arg: Any = None) -> None:
        heapq.heappush(self._heap, (self.t + max(delay, 0.0), self._seq, fn, node, arg))
        self._seq += 1

    def schedule_at_time(self, when: datetime | None, fn: Handler, node: FleetNode | None) -> None:
        delay = 0.0 if when is None else (when - self.clock.now()).total_seconds()
        self.schedule(delay, fn, node)

    # -- setup ---------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        self._wall_start = time.perf_counter()
        if self._db_given is None:
            url = self._url or DEFAULT_URL
            self.db = open_database(url, self.record_clock)
        else:
            self.db = self._db_given
            self.db.clock = self.record_clock
        self.db.upgrade()
        self.uow = UnitOfWork(self.db)
        planned = plan_nodes(self.scenario)
        if not self.live:
            existing = node_count(self.db)
            if existing:
                raise SimulationError(
                    f"the database at {self.db.url} already holds {existing} node(s); a simulation needs an empty "
                    "database (leave --database-url out to use one in memory)"
                )
        self._report("building the fleet", 0, 1)
        began = time.perf_counter()
        load_reference(self.db, self.scenario, self.actor, only_missing=self.live)
        if not self.live:
            validation.apply_policies(self.db, self.scenario, self.actor)
        stored = node_states(self.db, [p.id for p in planned]) if self.live else {}
        missing = [p for p in planned if p.id not in stored]
        load_nodes(
            self.db,
            missing,
            self.actor,
            NodeState.IN_SERVICE.value,
            f"{self.scenario.name}-inventory.jsonl",
            self._report,
        )
        for p in planned:
            self._add_node(p, stored.get(p.id, NodeState.IN_SERVICE.value))
        if self.live:
            self._take_over_others({p.id for p in planned})
        for node in self.nodes:
            if node.state == NodeState.IN_SERVICE:
                self.start_service(node)
            else:
                self.operator.adopt(node, node.state)
        for index, delivery in enumerate(self.scenario.deliveries):
            if delivery.day * DAY < self.duration:
                self.schedule(delivery.day * DAY, self._deliver, None, index)
        self.uow.commit()
        self.setup_seconds = time.perf_counter() - began

    def _take_over_others(self, planned: set[str]) -> None:
        """A live run also brings to life the nodes already in its clusters (a seeded demo fleet, earlier runs)."""
        clusters = [c.name for c in self.scenario.fleet.clusters]
        suppliers = {s.name for s in self.scenario.fleet.suppliers}
        skus = {s.name for s in self.scenario.fleet.skus}
        for row in cluster_nodes(self.db, clusters):
            if row.id in planned or row.supplier not in suppliers or row.sku not in skus:
                continue
            p = PlannedNode(
                row.id, row.serial, row.hostname, row.cluster, row.supplier, row.sku, row.gpus, "", None, None
            )
            self._add_node(p, row.state, numbered=False)

    def resync(self) -> None:
        """Forget every plan and pick each node up again from the state the database holds (after an error)."""
        self._heap.clear()
        self._pass_at = None
        self._evidence = True
        stored = node_states(self.db, [n.id for n in self.nodes])
        self.state_nodes.clear()
        self.in_service_gpus = 0
        for node in self.nodes:
            node.case = None
            node.gen += 1
            node.state = stored.get(node.id, node.state)
            self.state_nodes[node.state] += 1
            if node.state == NodeState.IN_SERVICE:
                self.in_service_gpus += node.gpus
        for node in self.nodes:
            if node.state == NodeState.IN_SERVICE:
                self.start_service(node)
            else:
                self.operator.adopt(node, node.state)
        self.kick_controller()
        self.uow.commit()

    def _report(self, what: str, done: int, total: int) -> None:
        if self.progress is not None and what:
            self.progress(0.0, self.days, 0)

    def _add_node(self, p: PlannedNode, state: str, numbered: bool = True) -> FleetNode:
        cluster = next(c for c in self.scenario.fleet.clusters if c.name == p.cluster)
        wl = cluster.workload
        workload = Workload(wl.utilization, wl.job_hours, wl.job_nodes, wl.teardown_minutes)
        body = self.world.add_node(p.cluster, p.hostname, p.gpus, workload)
        driver = self.registry.create(ClusterTarget(p.cluster, cluster.kind))
        node = FleetNode(
            p.id,
            p.hostname,
            p.cluster,
            p.supplier,
            p.sku,
            p.gpus,
            self.model.node_class(p.supplier, p.sku),
            driver,
            body,
            state,
            60.0 * wl.checkpoint_minutes,
            60.0 * wl.restart_minutes,
        )
        self.nodes.append(node)
        self.by_id[node.id] = node
        self.state_nodes[state] += 1
        if state == NodeState.IN_SERVICE:
            self.in_service_gpus += p.gpus
        if numbered:
            index = int(p.serial.rsplit("-", 1)[1]) + 1
            self._next_cluster_index[p.cluster] = max(self._next_cluster_index.get(p.cluster, 0), index)
        return node

    def _deliver(self, _: FleetNode | None, index: int) -> None:
        delivery = self.scenario.deliveries[index]
        first = self._next_cluster_index.get(delivery.cluster, 0)
        planned = plan_delivery(self.scenario, delivery.cluster, delivery.sku, delivery.count, first)
        self.uow.commit()  # the import runs its own transaction
        source = f"{self.scenario.name}-delivery-{index + 1}.jsonl"
        stored = node_states(self.db, [p.id for p in planned])
        load_nodes(self.db, [p for p in planned if p.id not in stored], self.actor, None, source)
        self.metrics.delivered_nodes += len(planned)
        for p in planned:
            if p.id in self.by_id:
                continue  # delivered in an earlier live run and already taken over
            node = self._add_node(p, stored.get(p.id, NodeState.RECEIVED.value))
            if node.state == NodeState.RECEIVED:
                self.operator.bring_up(node)
            else:
                self.operator.adopt(node, node.state)

    # -- the remediation controller, on simulated time ------------------------------------------------------

    def kick_controller(self, evidence: bool = False) -> None:
        """New evidence or a person's action: the controller takes a pass now (the ingest hook in production)."""
        self._evidence = self._evidence or evidence
        self._controller_at(self.t)

    def _controller_at(self, t: float) -> None:
        if self._pass_at is not None and self._pass_at <= t:
            return
        self._pass_at = t
        self.schedule(t - self.t, self._controller_pass, None, t)

    def _controller_pass(self, _: FleetNode | None, when: float) -> None:
        if self._pass_at != when:
            return  # superseded by an earlier pass
        self._pass_at = None
        evidence, self._evidence = self._evidence, False
        report = self.remediation.run_pass(StepWork(self.uow), events=evidence)
        if report.next_due is not None:
            delay = (report.next_due - self.record_now()).total_seconds() * self.speed
            self._controller_at(self.t + max(delay, 1.0))

    # -- what the operator calls back ----------------------------------------------------------------------

    def note_state(self, node: FleetNode, state: str) -> None:
        self.on_transition(node, node.state, state, None)

    def on_transition(self, node: FleetNode, from_state: str, to_state: str, event: str | None) -> None:
        if event is not None:
            self.metrics.transition(event)
        self.state_nodes[from_state] -= 1
        self.state_nodes[to_state] += 1
        if from_state == NodeState.IN_SERVICE:
            self.in_service_gpus -= node.gpus
        if to_state == NodeState.IN_SERVICE:
            self.in_service_gpus += node.gpus
        node.state = to_state

    def start_service(self, node: FleetNode, after_hardware: bool = False) -> None:
        """Wind the node's failure clock; after a hardware repair also decide whether it will be banned again."""
        node.gen += 1
        gen = node.gen
        wait = self.model.seconds_to_failure(node.cls)
        if wait < math.inf:
            self.schedule(wait, self._failure_due, node, (gen, False))
        if not after_hardware:
            return
        self.metrics.admitted_after_hardware(node.supplier, node.sku)
        node.last_slow_admit = self.t
        reban = self.model.escaped_defect_seconds() if node.body.defect else self.model.reban_after_seconds(node.cls)
        if reban is not None:
            self.schedule(reban, self._failure_due, node, (gen, True))

    def _failure_due(self, node: FleetNode | None, arg: tuple[int, bool]) -> None:
        assert node is not None
        gen, reban = arg
        if node.gen != gen or node.state != NodeState.IN_SERVICE or node.case is not None:
            return  # the clock of an earlier stint in service
        node.gen += 1
        component = self.model.draw_component(node.cls, hardware_only=reban)
        now = self.clock.now()
        fault = self.model.make_fault(component, now)
        job = self.world.inject_fault(node.body, fault)
        lost = None
        if job is not None:
            since_checkpoint = (now - job.start).total_seconds() % node.checkpoint_seconds
            lost = job.nodes * node.gpus * (since_checkpoint + node.restart_seconds) / 3600.0
        window = self.scenario.failures.reban_window_days * DAY
        if component.kind == "hardware":
            # A hardware fault in service bans the node from its cluster: the record the product's re-ban rates count.
            record_ban(self.uow.session(), node.id, self.record_now(), f"{component.name} in service", "sim", HEALTH)
        if component.kind == "hardware" and node.last_slow_admit is not None:
            if self.t - node.last_slow_admit <= window:
                self.metrics.rebanned(node.supplier, node.sku)
            node.last_slow_admit = None
        self.metrics.interruption(component, node.cluster, node.supplier, reban, lost)
        self.operator.on_failure(node, component, fault)

    # -- running -------------------------------------------------------------------------------------------

    def advance_to(self, t_end: float) -> None:
        """Process every event due up to ``t_end`` (seconds since the start)."""
        heap = self._heap
        clock = self.clock
        start = self.scenario.start
        began = time.perf_counter()
        try:
            while heap and heap[0][0] <= t_end:
                t, _, fn, node, arg = heapq.heappop(heap)
                if t >= self._next_step:
                    self._end_step(t)
                self.t = t
                clock.set(start + timedelta(seconds=t))
                fn(node, arg)  # type: ignore[arg-type]
                self.events += 1
            if t_end > self.t:
                self.t = t_end
                clock.set(start + timedelta(seconds=t_end))
            self._close_days(self.t)
            self.uow.commit()
        except BaseException as exc:
            self.uow.rollback(exc)
            raise
        finally:
            self.loop_seconds += time.perf_counter() - began

    def _end_step(self, t: float) -> None:
        self.uow.commit()
        self._close_days(t)
        self._next_step = (math.floor(t / self._step) + 1) * self._step
        if self.progress is not None:
            self.progress(min(t, self.duration) / DAY, self.days, self.events)

    def _close_days(self, t: float) -> None:
        while t >= self._next_day and self._next_day <= self.duration + 1e-6:
            self.metrics.close_day(self.in_service_gpus, {k: v for k, v in self.state_nodes.items() if v})
            self._next_day += DAY

    def run(self) -> dict[str, Any]:
        self.prepare()
        self.advance_to(self.duration)
        return self.finish()

    def finish(self) -> dict[str, Any]:
        self.uow.commit()
        end = self.at(self.duration)
        ids = [n.id for n in self.nodes]
        avail = availability(self.db, self.scenario.start, end, ids)
        stored = state_counts(self.db, ids)
        wall = time.perf_counter() - self._wall_start
        believed = {k: v for k, v in self.state_nodes.items() if v}
        if stored != believed:
            raise SimulationError(f"the simulator's view {believed} differs from the database {stored}")
        body = self.metrics.results()
        head = {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "interruptions": body.pop("interruptions"),
            "interruptions_total": body.pop("interruptions_total"),
            "hardware_share": body.pop("hardware_share"),
            "availability": round(avail.ratio, 5),
            "simulated_days": self.days,
            "nodes": len(self.nodes),
            "gpus": sum(n.gpus for n in self.nodes),
            "events_processed": self.events,
            "wall_seconds": round(wall, 3),
            "events_per_second": round(self.events / self.loop_seconds, 1) if self.loop_seconds > 0 else 0.0,
            "setup_seconds": round(self.setup_seconds, 3),
            "database": self.db.dialect,
            "transactions": self.uow.commits,
            "availability_by_cluster": {
                name: round(a / b, 5) if b else 0.0 for name, (a, b) in sorted(avail.by_cluster.items())
            },
            "nodes_by_state": dict(sorted(stored.items())),
        }
        figures = validation_figures(self.db, max(1, math.ceil(self.scenario.failures.reban_window_days)))
        return {**head, **body, **figures, **simulation_figures(self.db, self.record_now())}

    def close(self) -> None:
        if self._db_given is None and getattr(self, "db", None) is not None:
            self.db.dispose()


def simulate(
    scenario: Scenario,
    seed: int | None = None,
    days: float | None = None,
    database_url: str | None = None,
    db: Database | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run a scenario to its end and return its figures."""
    sim = Simulation(scenario, seed=seed, days=days, db=db, database_url=database_url, progress=progress)
    try:
        return sim.run()
    finally:
        sim.close()
