"""Prometheus metrics, computed from the database at scrape time.

Served without a token, as Prometheus scrapers expect: the figures are fleet-wide counts by state and cluster,
with no node names, tenants or labels. Put the endpoint behind the network policy that guards your other
scrape targets if cluster names are sensitive.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from gpufleet.domain.lifecycle import NodeState
from gpufleet.platform.database import Database
from gpufleet.reports.metrics import fleet_metrics

router = APIRouter(tags=["operations"])


class FleetCollector(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        data = fleet_metrics(self.db)
        nodes = GaugeMetricFamily("gpufleet_nodes", "Nodes by lifecycle state and cluster", labels=["state", "cluster"])
        for cluster in data.clusters:
            for state in NodeState:
                nodes.add_metric([state.value, cluster], data.nodes.get((state.value, cluster), 0))
        yield nodes
        gpus = GaugeMetricFamily("gpufleet_gpus", "GPUs by the lifecycle state of their node", labels=["state"])
        for name, count in sorted(data.gpus.items()):
            gpus.add_metric([name], count)
        yield gpus
        total = GaugeMetricFamily(
            "gpufleet_time_in_state_seconds_sum",
            "Seconds since state_since, summed over the nodes in each state",
            labels=["state"],
        )
        longest = GaugeMetricFamily(
            "gpufleet_time_in_state_seconds_max",
            "Seconds the longest-waiting node has been in each state",
            labels=["state"],
        )
        for name, times in sorted(data.time_in_state.items()):
            total.add_metric([name], times.seconds_sum)
            longest.add_metric([name], times.seconds_max)
        yield total
        yield longest
        for extra in data.extra:
            family = GaugeMetricFamily(extra.name, extra.doc, labels=list(extra.labels))
            for labels, value in extra.samples:
                family.add_metric(list(labels), value)
            yield family


def registry_for(db: Database) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(db))
    return registry


@router.get("/metrics", summary="Prometheus metrics (no token needed)", response_class=Response)
async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics_registry
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
