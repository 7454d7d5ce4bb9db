"""The cluster sync controller: reconcile every cluster with a real driver, again and again.

Safe in several processes: each sync takes a per-cluster advisory lock on PostgreSQL (a second process skips the
cluster that run) and writes each node's observations in one transaction, so nothing is recorded twice. A cluster
whose scheduler does not answer is reported and tried again on the next pass; one cluster's trouble never stops the
others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import ClassVar

from gpufleet.clusters.sync import SyncReport, sync_cluster, synced_clusters
from gpufleet.controllers.base import ControllerSpec, Retry, controller
from gpufleet.platform.context import SYSTEM, Actor
from gpufleet.platform.database import Database

log = logging.getLogger("gpufleet.controllers.cluster_sync")

INTERVAL = timedelta(seconds=60)
"""How often each cluster is reconciled: a hand drain shows up in gpufleet within about this long."""


def sync_once(db: Database, actor: Actor = SYSTEM, clusters: list[str] | None = None) -> list[SyncReport]:
    reports = []
    for name in clusters if clusters is not None else synced_clusters(db):
        try:
            report = sync_cluster(db, name, actor)
        except Exception:  # one cluster's failure must not stop the others
            log.exception("cluster=%s sync failed", name)
            continue
        if not report.reachable:
            log.warning("cluster=%s scheduler unreachable: %s", name, report.error)
        reports.append(report)
    return reports


@controller("cluster-sync", interval=INTERVAL, retry=Retry(timedelta(seconds=5), 2.0, timedelta(minutes=5)))
class ClusterSyncController:
    """Keeps every cluster with a scheduler driver in step with gpufleet: what it observes, what gpufleet holds."""

    spec: ClassVar[ControllerSpec]

    def __init__(
        self,
        db: Database,
        actor: Actor = SYSTEM,
        on_pass: Callable[[list[SyncReport]], None] | None = None,
    ) -> None:
        self.db = db
        self.actor = actor
        self.on_pass = on_pass
        self.last: list[SyncReport] = []

    def reconcile(self) -> datetime | None:
        self.last = sync_once(self.db, self.actor)
        if self.on_pass is not None:
            self.on_pass(self.last)
        return None
