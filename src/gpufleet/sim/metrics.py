"""Figures a simulation produces: interruptions, repairs, reboots, validation and re-bans, and a daily series.

Counts here are tallied as the simulation acts; availability comes from the database's event log
(``reports.sim_history``) so the headline figure is what the product itself recorded.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gpufleet.sim.calibration import Calibration, Component

DAY = 86400.0


def _stats(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0}
    ordered = sorted(values)
    return {
        "count": len(values),
        "mean": round(statistics.fmean(values), 3),
        "p50": round(ordered[len(ordered) // 2], 3),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
    }


@dataclass
class Rate:
    trials: int = 0
    hits: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.trials, "count": self.hits, "rate": round(self.hits / self.trials, 4) if self.trials else 0.0}


@dataclass
class Day:
    day: int
    failures_hardware: int = 0
    failures_software: int = 0
    in_service_gpus: int = 0
    nodes_by_state: dict[str, int] = field(default_factory=dict)


class Metrics:
    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self.interruptions: Counter[str] = Counter({c.name: 0 for c in calibration.components})
        self.by_category: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.by_cluster: Counter[str] = Counter()
        self.by_supplier: Counter[str] = Counter()
        self.caused_by_reban = 0
        self.jobs_interrupted = 0
        self.gpu_hours_lost = 0.0
        self.transitions = 0
        self.transitions_by_event: Counter[str] = Counter()
        self.repair_hours: dict[str, list[float]] = {"software": [], "hardware": []}
        self.rma = 0
        self.rma_days: list[float] = []
        self.in_house = 0
        self.reboots = 0
        self.reboots_returned = 0
        self.reboots_not_returned = 0
        self.reboot_minutes: list[float] = []
        self.drains = 0
        self.drains_forced = 0
        self.drain_minutes: list[float] = []
        self.validation: dict[str, Rate] = {"fast_track": Rate(), "slow_path": Rate()}
        self.validation_by_supplier: dict[str, Rate] = {}
        self.validation_by_sku: dict[str, Rate] = {}
        self.reban_by_supplier: dict[str, Rate] = {}
        self.reban_by_sku: dict[str, Rate] = {}
        self.delivered_nodes = 0
        self.brought_up_gpus = 0
        self.days: list[Day] = []
        self._today = Day(0)

    # -- tallies -------------------------------------------------------------------------------------------

    def interruption(
        self, component: Component, cluster: str, supplier: str, reban: bool, lost_gpu_hours: float | None
    ) -> None:
        self.interruptions[component.name] += 1
        self.by_category[component.category] += 1
        self.by_kind[component.kind] += 1
        self.by_cluster[cluster] += 1
        self.by_supplier[supplier] += 1
        if reban:
            self.caused_by_reban += 1
        if lost_gpu_hours is not None:
            self.jobs_interrupted += 1
            self.gpu_hours_lost += lost_gpu_hours
        if component.kind == "hardware":
            self._today.failures_hardware += 1
        else:
            self._today.failures_software += 1

    def transition(self, event: str) -> None:
        self.transitions += 1
        self.transitions_by_event[event] += 1

    def repaired(self, kind: str, hours: float) -> None:
        self.repair_hours[kind].append(hours)

    def validated(self, path: str, supplier: str, sku: str, failed: bool) -> None:
        for rate in (
            self.validation.setdefault(path, Rate()),
            self.validation_by_supplier.setdefault(supplier, Rate()),
            self.validation_by_sku.setdefault(sku, Rate()),
        ):
            rate.trials += 1
            rate.hits += int(failed)

    def admitted_after_hardware(self, supplier: str, sku: str) -> None:
        self.reban_by_supplier.setdefault(supplier, Rate()).trials += 1
        self.reban_by_sku.setdefault(sku, Rate()).trials += 1

    def rebanned(self, supplier: str, sku: str) -> None:
        self.reban_by_supplier.setdefault(supplier, Rate()).hits += 1
        self.reban_by_sku.setdefault(sku, Rate()).hits += 1

    def close_day(self, in_service_gpus: int, nodes_by_state: dict[str, int]) -> None:
        self._today.in_service_gpus = in_service_gpus
        self._today.nodes_by_state = dict(sorted(nodes_by_state.items()))
        self.days.append(self._today)
        self._today = Day(self._today.day + 1)

    # -- results -------------------------------------------------------------------------------------------

    def results(self) -> dict[str, Any]:
        total = sum(self.interruptions.values())
        hardware = self.by_kind.get("hardware", 0)
        cal = self.calibration
        return {
            "interruptions": dict(self.interruptions),
            "interruptions_total": total,
            "hardware_share": round(hardware / total, 4) if total else 0.0,
            "interruptions_by_category": dict(sorted(self.by_category.items())),
            "interruptions_by_kind": dict(sorted(self.by_kind.items())),
            "interruptions_by_cluster": dict(sorted(self.by_cluster.items())),
            "interruptions_by_supplier": dict(sorted(self.by_supplier.items())),
            "interruptions_from_rebans": self.caused_by_reban,
            "calibration": {
                "source": cal.source,
                "window_days": cal.window_days,
                "gpus": cal.gpus,
                "interruptions_total": cal.total,
                "hardware_share": round(cal.hardware_share, 4),
                "share_by_category": {k: round(v, 4) for k, v in sorted(cal.share_by_category().items())},
                "counts": {c.name: c.count for c in cal.components},
            },
            "jobs": {"interrupted": self.jobs_interrupted, "gpu_hours_lost": round(self.gpu_hours_lost, 1)},
            "transitions": self.transitions,
            "transitions_by_event": dict(sorted(self.transitions_by_event.items())),
            "mttr_hours": {k: _stats(v) for k, v in self.repair_hours.items()},
            "repairs": {
                "completed": sum(len(v) for v in self.repair_hours.values()),
                "rma": self.rma,
                "rma_days": _stats(self.rma_days),
                "in_house": self.in_house,
            },
            "reboots": {
                "issued": self.reboots,
                "returned": self.reboots_returned,
                "not_returned": self.reboots_not_returned,
                "minutes": _stats(self.reboot_minutes),
            },
            "drains": {"count": self.drains, "forced": self.drains_forced, "minutes": _stats(self.drain_minutes)},
            "validation": {
                **{path: rate.as_dict() for path, rate in self.validation.items()},
                "failure_by_supplier": {k: v.as_dict() for k, v in sorted(self.validation_by_supplier.items())},
                "failure_by_sku": {k: v.as_dict() for k, v in sorted(self.validation_by_sku.items())},
            },
            "reban": {
                "by_supplier": {k: v.as_dict() for k, v in sorted(self.reban_by_supplier.items())},
                "by_sku": {k: v.as_dict() for k, v in sorted(self.reban_by_sku.items())},
            },
            "bring_up": {"delivered_nodes": self.delivered_nodes, "gpus_admitted": self.brought_up_gpus},
            "daily": [
                {
                    "day": d.day,
                    "failures_hardware": d.failures_hardware,
                    "failures_software": d.failures_software,
                    "in_service_gpus": d.in_service_gpus,
                    "nodes_by_state": d.nodes_by_state,
                }
                for d in self.days
            ],
        }
