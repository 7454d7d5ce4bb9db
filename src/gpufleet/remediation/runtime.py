"""What the remediation engine runs on: units of work, the clusters' facts and schedulers, and time.

The engine never opens a session of its own: a ``Work`` hands it one and says when what was done so far must be
durable. In production each ``checkpoint`` is a commit, so an intent is on disk before the driver acts; the
simulator's work is its step transaction, where a crash loses the whole in-memory run anyway.

The drivers' optional skills (``ResetsGpus``, ``RestartsWorkload``, ``Reimages``) now live with the scheduler that
reads them, ``gpufleet.clusters.scheduler``; they are still importable from here for code written before.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from gpufleet.clusters.drivers import DEFAULT_DRIVER, ClusterTarget, DriverRegistry
from gpufleet.clusters.scheduler import Reimages as Reimages
from gpufleet.clusters.scheduler import ResetsGpus as ResetsGpus
from gpufleet.clusters.scheduler import RestartsWorkload as RestartsWorkload
from gpufleet.clusters.scheduler import Scheduler
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.remediation import store


class Work(Protocol):
    def session(self) -> UnitOfWork: ...

    def checkpoint(self) -> None:
        """Make everything written so far durable (before a driver call that must not be repeated)."""


class DbWork:
    """Production work: a transaction at a time on the database, committed at each checkpoint and at the end."""

    durable = True

    def __init__(self, db: Database) -> None:
        self.db = db
        self._context: AbstractContextManager[UnitOfWork] | None = None
        self._session: UnitOfWork | None = None

    def session(self) -> UnitOfWork:
        if self._session is None:
            self._context = self.db.transaction()
            self._session = self._context.__enter__()
        return self._session

    def checkpoint(self) -> None:
        if self._context is not None:
            context, self._context, self._session = self._context, None, None
            context.__exit__(None, None, None)

    def rollback(self, exc: BaseException) -> None:
        if self._context is not None:
            context, self._context, self._session = self._context, None, None
            context.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self) -> DbWork:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.checkpoint()
        else:
            self.rollback(exc)


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TimeFrame:
    """How the clusters' clock relates to the clock gpufleet records with.

    The same in production. A paced simulation runs its clusters ``speed`` times faster than it records (a demo
    shows days in minutes), so cluster durations from the policy shrink by ``speed`` in recorded time and times the
    driver reports are mapped across.
    """

    origin: datetime | None = None
    speed: float = 1.0

    def span(self, duration: timedelta) -> timedelta:
        return duration if self.speed == 1.0 else duration / self.speed

    def to_record(self, when: datetime) -> datetime:
        if self.speed == 1.0 or self.origin is None:
            return when
        return self.origin + (when - self.origin) / self.speed

    def to_driver(self, when: datetime) -> datetime:
        if self.speed == 1.0 or self.origin is None:
            return when
        return self.origin + (when - self.origin) * self.speed


@dataclass
class ClusterFacts:
    id: int
    name: str
    target: ClusterTarget
    size: int = 0
    """Nodes the budgets count: every state but decommissioning and decommissioned."""
    total: int = 0
    """Every node, whatever its state: the breaker's threshold is a share of it."""
    sized_at: datetime | None = None
    scheduler: Scheduler | None = None
    """Kept with the facts, so a driver's skills are read once, not on every step."""


SIZE_TTL = timedelta(minutes=10)
COUNTED_STATES = store.COUNTED_STATES
"""Every node state but the ``LEAVING_STATES``: the states a cluster's size counts (the store counts them)."""


@dataclass
class ClusterBook:
    """Clusters by id with their driver target and scheduler, and group sizes for the budgets, re-read every few
    minutes."""

    registry: DriverRegistry
    clusters: dict[int, ClusterFacts] = field(default_factory=dict)
    domains: dict[int, tuple[str, int, datetime]] = field(default_factory=dict)

    def cluster(self, session: UnitOfWork, cluster_id: int) -> ClusterFacts:
        facts = self.clusters.get(cluster_id)
        if facts is None:
            row = store.cluster_target(session, cluster_id)
            target = ClusterTarget(row.name, row.kind, row.driver or DEFAULT_DRIVER, dict(row.driver_config or {}))
            facts = ClusterFacts(cluster_id, row.name, target)
            self.clusters[cluster_id] = facts
        return facts

    def scheduler(self, session: UnitOfWork, cluster_id: int) -> Scheduler:
        """The cluster's scheduler, kept while the registry hands out the same driver: a driver replaced there
        (``DriverRegistry.register``, new settings) gets a new one, as asking the registry each time would."""
        facts = self.cluster(session, cluster_id)
        driver = self.registry.create(facts.target)
        if facts.scheduler is None or facts.scheduler.driver is not driver:
            facts.scheduler = Scheduler(driver)
        return facts.scheduler

    def size(self, session: UnitOfWork, cluster_id: int, now: datetime) -> int:
        return self._sized(session, cluster_id, now).size

    def total(self, session: UnitOfWork, cluster_id: int, now: datetime) -> int:
        return self._sized(session, cluster_id, now).total

    def _sized(self, session: UnitOfWork, cluster_id: int, now: datetime) -> ClusterFacts:
        """Both sizes, counted together once per ``SIZE_TTL``: in a storm every case opened asks for them, and
        counting a cluster of thousands each time cost more than the rest of opening the case on PostgreSQL."""
        facts = self.cluster(session, cluster_id)
        if facts.sized_at is None or now - facts.sized_at > SIZE_TTL or now < facts.sized_at:
            size, total = store.cluster_sizes(session, cluster_id)
            facts.size, facts.total, facts.sized_at = size, total, now
        return facts

    def domain(self, session: UnitOfWork, domain_id: int, now: datetime) -> tuple[str, int]:
        """The domain's name and size. Every domain is sized in one grouped read, since a burst of faults
        touches many domains and a read per domain would scan the node table each time."""
        cached = self.domains.get(domain_id)
        if cached is None or now - cached[2] > SIZE_TTL or now < cached[2]:
            sizes = store.domain_sizes(session)
            names = store.domain_names(session)
            self.domains = {i: (names.get(i, str(i)), int(n), now) for i, n in sizes.items() if i is not None}
            cached = self.domains.setdefault(domain_id, (names.get(domain_id, str(domain_id)), 0, now))
        return cached[0], cached[1]

    def forget(self) -> None:
        self.clusters.clear()
        self.domains.clear()

    def __iter__(self) -> Iterator[ClusterFacts]:
        return iter(self.clusters.values())
