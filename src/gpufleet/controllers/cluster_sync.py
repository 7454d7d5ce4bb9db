"""The cluster sync controller: reconcile every cluster with a real driver, again and again.

Safe in several processes: each sync takes a per-cluster advisory lock on PostgreSQL (a second process skips the
cluster that run) and writes each node's observations in one transaction, so nothing is recorded twice. A cluster
whose scheduler does not answer is reported and tried again on the next pass; one cluster's trouble never stops the
others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gpufleet.clusters.sync import SyncReport, sync_cluster, synced_clusters
from gpufleet.platform.context import SYSTEM, Actor
from gpufleet.platform.database import Database

log = logging.getLogger("gpufleet.controllers.cluster_sync")

INTERVAL_SECONDS = 60.0
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


def run(
    db: Database,
    stop: threading.Event,
    interval: float = INTERVAL_SECONDS,
    actor: Actor = SYSTEM,
    on_pass: Callable[[list[SyncReport]], None] | None = None,
) -> None:
    """Sync every driven cluster each ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        reports = sync_once(db, actor)
        if on_pass is not None:
            on_pass(reports)
        stop.wait(interval)
