"""The outbox controller: deliver what the other capabilities wrote to the outbox, with retries and backoff.

Messages are written in the same transaction as the decision that made them; this loop only sends. Each message is
claimed before it is sent, so several processes deliver each message once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from gpufleet.controllers.base import ControllerSpec, Retry, controller
from gpufleet.platform.database import Database
from gpufleet.remediation.outbox import DeliveryReport, Sender, deliver_due


@controller("outbox", interval=timedelta(seconds=15), retry=Retry(timedelta(seconds=2), 2.0, timedelta(minutes=5)))
class OutboxController:
    """Delivers due outbox messages (tickets, notices) to their channels; failures wait out a backoff."""

    spec: ClassVar[ControllerSpec]

    def __init__(self, db: Database, sender: Sender | None = None) -> None:
        self.db = db
        self.sender = sender
        self.last: DeliveryReport | None = None

    def reconcile(self) -> datetime | None:
        self.last = deliver_due(self.db, self.sender)
        return None
