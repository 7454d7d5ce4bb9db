"""Every reconcile loop gpufleet runs, in one place: what ``gpufleet controllers run`` starts.

A loop is a controller class declared with its interval and retry policy (``controllers.base.controller``); this
module is where they are put together for one database. Each can still run on its own (``--only NAME``), and each is
safe to run in several processes at once.
"""

from __future__ import annotations

from collections.abc import Callable

from gpufleet.controllers.base import CONTROLLERS, ControllerSpec, Reconciler
from gpufleet.controllers.cluster_sync import ClusterSyncController
from gpufleet.controllers.escalation import StuckNodeController
from gpufleet.controllers.outbox import OutboxController
from gpufleet.controllers.remediation import RemediationController
from gpufleet.platform.database import Database

LOOPS: dict[str, Callable[[Database], Reconciler]] = {
    "remediation": lambda db: RemediationController(db, deliver=False),
    "outbox": OutboxController,
    "cluster-sync": ClusterSyncController,
    "stuck-nodes": StuckNodeController,
}
"""Each loop by name; remediation leaves delivery to the outbox loop when they run together."""


def specs() -> list[ControllerSpec]:
    return [CONTROLLERS[name] for name in LOOPS]


def build(db: Database, names: list[str] | None = None) -> list[Reconciler]:
    """The named loops (every one when ``names`` is empty) for this database; an unknown name is a ValueError."""
    wanted = names or list(LOOPS)
    unknown = [n for n in wanted if n not in LOOPS]
    if unknown:
        raise ValueError(f"unknown controller {', '.join(unknown)}; known: {', '.join(LOOPS)}")
    return [LOOPS[name](db) for name in wanted]
