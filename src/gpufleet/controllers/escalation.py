"""The stuck-node controller: every node that outstays its state's time limit gets one escalation per stay.

The same work as ``gpufleet nodes escalate``, run on a timer so nobody has to remember to. Safe in several
processes: the check and the insert happen under a lock on the node row (``fleet.escalation``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from gpufleet.controllers.base import ControllerSpec, Retry, controller
from gpufleet.fleet.escalation import EscalationReport, escalate_overdue
from gpufleet.platform.context import SYSTEM, Actor
from gpufleet.platform.database import Database


@controller(
    "stuck-nodes", interval=timedelta(minutes=5), retry=Retry(timedelta(seconds=10), 2.0, timedelta(minutes=10))
)
class StuckNodeController:
    """Records one escalation for each node past its state's time limit, once per stay."""

    spec: ClassVar[ControllerSpec]

    def __init__(self, db: Database, actor: Actor = SYSTEM) -> None:
        self.db = db
        self.actor = actor
        self.last: EscalationReport | None = None

    def reconcile(self) -> datetime | None:
        self.last = escalate_overdue(self.db, self.actor)
        return None
