"""Fleet figures for a metrics scrape, read fresh from the source of truth each time.

Computed at scrape time rather than kept as counters so a restarted server, a second replica or a change made by
the CLI never makes the numbers drift from what the database says. One grouped query keeps a scrape cheap at
fleet size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gpufleet.domain.lifecycle import NodeState
from gpufleet.platform.database import Database
from gpufleet.reports import store
from gpufleet.reports.remediation import Gauge, remediation_gauges


@dataclass
class StateTime:
    """Seconds nodes have spent in their current state: summed over the nodes, and the longest one."""

    nodes: int = 0
    seconds_sum: float = 0.0
    seconds_max: float = 0.0


@dataclass
class FleetMetrics:
    at: datetime
    nodes: dict[tuple[str, str], int] = field(default_factory=dict)
    """Node count by (state, cluster)."""
    gpus: dict[str, int] = field(default_factory=dict)
    """GPU count by state."""
    time_in_state: dict[str, StateTime] = field(default_factory=dict)
    clusters: list[str] = field(default_factory=list)
    extra: list[Gauge] = field(default_factory=list)
    """Further gauge families (remediation), emitted as they come."""


def fleet_metrics(db: Database) -> FleetMetrics:
    now = db.clock.now()
    out = FleetMetrics(at=now)
    out.gpus = {s.value: 0 for s in NodeState}
    out.time_in_state = {s.value: StateTime() for s in NodeState}
    now_epoch = now.timestamp()
    with db.reader() as session:
        out.clusters = store.cluster_names(session)
        for state, cluster, count, gpus, since_sum, oldest in store.node_groups(session):
            out.nodes[(state, cluster)] = int(count)
            out.gpus[state] = out.gpus.get(state, 0) + int(gpus)
            times = out.time_in_state.setdefault(state, StateTime())
            times.nodes += int(count)
            times.seconds_sum += max(0.0, int(count) * now_epoch - float(since_sum or 0))
            if oldest is not None:
                times.seconds_max = max(times.seconds_max, (now - oldest).total_seconds())
        out.extra = remediation_gauges(session, now)
    return out
