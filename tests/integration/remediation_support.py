"""A small fleet on a simulated cluster, and a way to let the remediation controller run on the test's clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from gpufleet.adapters.db.models import Node, RemediationCase, RemediationStep
from gpufleet.adapters.drivers.base import RepairAction
from gpufleet.adapters.drivers.simulated import Fault, SimulatedDriver, SimulatedWorld
from gpufleet.clusters.drivers import DriverRegistry
from gpufleet.fleet.inventory import chassis_id, import_nodes
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.remediation.engine import Engine, PassReport
from gpufleet.remediation.intake import record_health_event
from gpufleet.remediation.runtime import DbWork
from tests.factories import OPERATOR, seed_reference

HEADER = "supplier,serial,hostname,sku,cluster,state,gpu_serials,labels\n"
PEOPLE = Actor(name="test:technician", role=Role.OPERATOR)


def seed_remediation_fleet(db: Database, east: int = 12, west: int = 4) -> None:
    """E1..En: H100 in east-frontier (acme-cloud); W1..Wn: GB300 in west-fleet (bolt-hw, pool 'serving'); serving."""
    seed_reference(db)
    rows = [
        f"acme-cloud,E{i},host-e{i},H100-SXM-80GB,east-frontier,in_service,"
        + ";".join(f"GPU-E{i}-{g}" for g in range(8))
        + ",pool=training"
        for i in range(1, east + 1)
    ]
    rows += [
        f"bolt-hw,W{i},host-w{i},GB300-NVL72,west-fleet,in_service,"
        + ";".join(f"GPU-W{i}-{g}" for g in range(4))
        + ",pool=serving"
        for i in range(1, west + 1)
    ]
    report = import_nodes(db, HEADER + "\n".join(rows) + "\n", "nodes.csv", OPERATOR)
    assert report.ok and report.applied, report.as_dict()


def node_id(serial: str) -> str:
    return chassis_id("acme-cloud" if serial.startswith("E") else "bolt-hw", serial)


def cluster_of(serial: str) -> str:
    return "east-frontier" if serial.startswith("E") else "west-fleet"


@dataclass
class Harness:
    """The database, a simulated world standing in for the clusters, and the controller's engine."""

    db: Database
    clock: ManualClock
    world: SimulatedWorld
    registry: DriverRegistry
    engine: Engine
    passes: list[PassReport] = field(default_factory=list)

    def host(self, serial: str) -> str:
        return f"host-{serial.lower()}"

    def break_node(
        self,
        serial: str,
        action: RepairAction,
        kind: str = "hardware",
        remedy: str | None = None,
        repair_minutes: float = 0.0,
        unreachable: bool = False,
    ) -> Fault:
        node = self.world.node(cluster_of(serial), self.host(serial))
        fault = Fault("part", kind, action, self.clock.now(), "PART", repair_minutes * 60, unreachable, remedy)
        self.world.inject_fault(node, fault)
        return fault

    def report(
        self,
        serial: str,
        *codes: str,
        gpu: int | None = None,
        at: datetime | None = None,
        fingerprint: str | None = None,
        severity: str = "critical",
        data: dict[str, Any] | None = None,
    ) -> list[int | None]:
        now = self.clock.now()
        ids = []
        with self.db.transaction() as session:
            for code in codes:
                ids.append(
                    record_health_event(
                        session,
                        node_id(serial),
                        code,
                        at or now,
                        now,
                        severity=severity,
                        source="test",
                        gpu_index=gpu,
                        fingerprint=fingerprint,
                        data=data,
                    )
                )
        return ids

    def run(self, engine: Engine | None = None) -> PassReport:
        with DbWork(self.db) as work:
            report = (engine or self.engine).run_pass(work)
        self.passes.append(report)
        return report

    def settle(self, hours: float = 24.0, step: timedelta | None = None) -> None:
        """Run the controller whenever it has work, moving the clock to each due time, for ``hours``."""
        end = self.clock.now() + timedelta(hours=hours)
        while True:
            report = self.run()
            due = report.next_due
            if step is not None:
                due = self.clock.now() + step if due is None else min(due, self.clock.now() + step)
            if due is None or due > end:
                self.clock.set(end)
                self.run()
                return
            self.clock.set(max(due, self.clock.now() + timedelta(seconds=1)))

    def case(self, serial: str) -> RemediationCase:
        with self.db.reader() as session:
            row = session.execute(
                select(RemediationCase)
                .where(RemediationCase.node_id == node_id(serial))
                .order_by(RemediationCase.id.desc())
                .limit(1)
            ).scalar_one()
            session.expunge(row)
            return row

    def cases(self, serial: str) -> list[RemediationCase]:
        with self.db.reader() as session:
            rows = list(session.scalars(select(RemediationCase).where(RemediationCase.node_id == node_id(serial))))
            session.expunge_all()
            return rows

    def steps(self, case_id: int) -> list[RemediationStep]:
        with self.db.reader() as session:
            rows = list(
                session.scalars(
                    select(RemediationStep).where(RemediationStep.case_id == case_id).order_by(RemediationStep.id)
                )
            )
            session.expunge_all()
            return rows

    def node_state(self, serial: str) -> str:
        with self.db.reader() as session:
            return session.execute(select(Node.state).where(Node.id == node_id(serial))).scalar_one()


def harness(db: Database, clock: ManualClock, east: int = 12, west: int = 4, **engine: Any) -> Harness:
    seed_remediation_fleet(db, east, west)
    world = SimulatedWorld(clock, seed=7, boot_minutes=(5.0, 8.0), detect_per_pass=1.0)
    registry = DriverRegistry(clock)
    registry.register("simulated", lambda target, _clock: SimulatedDriver(world, target.name))
    return Harness(db, clock, world, registry, Engine(registry, clock, **engine))


def transitions_of(h: Harness, case_id: int) -> list[str]:
    return [f"{s.from_state}->{s.to_state}" for s in h.steps(case_id) if s.kind == "transition"]
