"""The remediation controller: evidence into cases, cases through the ladder, and the outbox out to suppliers.

Safe to run in several processes at once: events and cases are claimed (``SKIP LOCKED`` on PostgreSQL, the write
lock on SQLite) and cases are leased while a process works them, and every intent is committed before the cluster is
asked to act, so a restart observes what happened instead of doing it again.
"""

from __future__ import annotations

import signal
from datetime import datetime, timedelta
from typing import Any, ClassVar

from gpufleet.clusters.drivers import DriverRegistry, default_registry
from gpufleet.controllers.base import ControllerSpec, Retry, Runner, controller
from gpufleet.platform.database import Database
from gpufleet.remediation.engine import Engine, PassReport
from gpufleet.remediation.outbox import DeliveryReport, Sender, deliver_due
from gpufleet.remediation.runtime import DbWork


@controller("remediation", interval=timedelta(seconds=10), retry=Retry(timedelta(seconds=1), 2.0, timedelta(minutes=1)))
class RemediationController:
    """Moves health events into remediation cases and cases through quarantine, repair, validation and back."""

    spec: ClassVar[ControllerSpec]

    def __init__(
        self,
        db: Database,
        registry: DriverRegistry | None = None,
        sender: Sender | None = None,
        deliver: bool = True,
        engine: Engine | None = None,
    ) -> None:
        self.db = db
        self.engine = engine or Engine(registry or default_registry(), db.clock)
        self.sender = sender
        self.deliver = deliver
        self.last: PassReport | None = None
        self.last_delivery: DeliveryReport | None = None

    def reconcile(self) -> datetime | None:
        with DbWork(self.db) as work:
            self.last = self.engine.run_pass(work)
        if self.deliver:
            self.last_delivery = deliver_due(self.db, self.sender)
        return self.last.next_due

    def report(self) -> dict[str, Any]:
        out = self.last.as_dict() if self.last else {}
        if self.last_delivery is not None:
            out["outbox"] = self.last_delivery.as_dict()
        return out


def run(db: Database, once: bool = False, deliver: bool = True, log: Any = None) -> dict[str, Any]:
    """Run the controller in this process: one pass (``once``) or until interrupted. What the CLI starts."""
    controller = RemediationController(db, deliver=deliver)
    if once:
        controller.reconcile()
        return controller.report()
    runner = Runner(controller, db.clock.now, log=log)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    try:
        runner.run()
    except KeyboardInterrupt:
        runner.stop()
    return {"passes": runner.passes, **controller.report()}
