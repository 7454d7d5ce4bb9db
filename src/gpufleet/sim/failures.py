"""The failure model: when nodes break, what breaks, how long fixing takes, and what comes back bad.

Rates come from the calibration data (``calibration.py``) per in-service hour, scaled per supplier and per SKU for
hardware and software separately. Repair times follow the published shape: software fixes take minutes (a reboot or
reimage), hardware is reset in house within hours or goes back to the supplier for days. Suppliers and SKUs also differ
in how often returned hardware hides a defect and how often an admitted node is banned again.

Each concern draws from its own random stream derived from the seed, so adding a draw in one place does not shift
every other outcome of the run.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from dataclasses import dataclass
from datetime import datetime

from gpufleet.adapters.drivers.base import RepairAction
from gpufleet.adapters.drivers.simulated import Fault
from gpufleet.sim.calibration import Component, load_calibration
from gpufleet.sim.scenario import Profile, RmaDays, Scenario, Spread

DAY = 86400.0
HOUR = 3600.0

NODE_DOWN_COMPONENTS = frozenset({"Power Supply", "Server Chassis", "CPU", "System Memory", "IO Expansion Board"})
"""Components whose failure takes the whole host off the network, not just a job."""
APPLICATION_COMPONENTS = frozenset({"Software Bug", "NCCL Watchdog Timeouts"})
"""Software faults of the job itself, which restarting it (from its checkpoint) usually gets past."""


def spread_sample(rng: random.Random, spread: Spread) -> float:
    sigma = math.log(spread.p90 / spread.median) / 1.2816
    return spread.median * math.exp(sigma * rng.gauss(0.0, 1.0))


def _code(component: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", component).strip("_").upper()


@dataclass(frozen=True)
class FailureClass:
    """Everything about failures that is the same for all nodes of one supplier and SKU."""

    supplier: str
    sku: str
    rate_per_second: float
    components: tuple[Component, ...]
    cumulative: tuple[float, ...]
    hardware_cumulative: tuple[float, ...]
    hardware_components: tuple[Component, ...]
    validation_failure: float
    reban: float
    rma: RmaDays


def _combine(a: float, b: float) -> float:
    """Two independent chances of the same thing: supplier and SKU each add their own risk."""
    return 1.0 - (1.0 - a) * (1.0 - b)


class FailureModel:
    def __init__(self, scenario: Scenario, seed: int) -> None:
        spec = scenario.failures
        self.spec = spec
        self.calibration = load_calibration(spec.calibration)
        self.failure_rng = random.Random(f"{seed}:failures")
        self.repair_rng = random.Random(f"{seed}:repairs")
        self.defect_rng = random.Random(f"{seed}:defects")
        self.remedy_rng = random.Random(f"{seed}:remedies")
        self._classes: dict[tuple[str, str], FailureClass] = {}
        self._gpus = {s.name: s.gpus_per_node for s in scenario.fleet.skus}

    def node_class(self, supplier: str, sku: str) -> FailureClass:
        key = (supplier, sku)
        cls = self._classes.get(key)
        if cls is None:
            cls = self._build_class(supplier, sku)
            self._classes[key] = cls
        return cls

    def _build_class(self, supplier: str, sku: str) -> FailureClass:
        spec = self.spec
        sp = spec.suppliers.get(supplier, Profile())
        kp = spec.skus.get(sku, Profile())
        gpus = self._gpus[sku]
        rates = []
        for c in self.calibration.components:
            factor = spec.scale * (spec.components[c.name].factor if c.name in spec.components else 1.0)
            if c.kind == "hardware":
                factor *= sp.hardware_factor * kp.hardware_factor
            else:
                factor *= sp.software_factor * kp.software_factor
            rates.append(c.rate_per_hour * (gpus if c.per_gpu else 1) * factor)
        total = sum(rates)
        cumulative = tuple(_cumsum(rates))
        hardware = [(c, r) for c, r in zip(self.calibration.components, rates, strict=True) if c.kind == "hardware"]
        return FailureClass(
            supplier=supplier,
            sku=sku,
            rate_per_second=total / HOUR,
            components=self.calibration.components,
            cumulative=cumulative,
            hardware_cumulative=tuple(_cumsum([r for _, r in hardware])),
            hardware_components=tuple(c for c, _ in hardware),
            validation_failure=_combine(sp.validation_failure, kp.validation_failure),
            reban=_combine(sp.reban, kp.reban),
            rma=sp.rma_days or kp.rma_days or spec.repair.rma_days,
        )

    # -- when and what ---------------------------------------------------------------------------------------

    def seconds_to_failure(self, cls: FailureClass) -> float:
        if cls.rate_per_second <= 0:
            return math.inf
        return self.failure_rng.expovariate(cls.rate_per_second)

    def draw_component(self, cls: FailureClass, hardware_only: bool = False) -> Component:
        cumulative = cls.hardware_cumulative if hardware_only else cls.cumulative
        components = cls.hardware_components if hardware_only else cls.components
        if not components or cumulative[-1] <= 0:
            components, cumulative = cls.components, cls.cumulative
        x = self.failure_rng.random() * cumulative[-1]
        return components[min(bisect.bisect_right(cumulative, x), len(components) - 1)]

    def make_fault(self, component: Component, now: datetime) -> Fault:
        """The physical fault, with the repair it will need decided now (diagnosis will find it later)."""
        if component.kind == "software":
            action = RepairAction.REIMAGE if component.category == "Dependency" else RepairAction.REBOOT
            seconds = 60.0 * spread_sample(self.repair_rng, self.spec.repair.software_minutes)
            remedy = None
            if (
                component.name in APPLICATION_COMPONENTS
                and self.remedy_rng.random() < self.spec.repair.restart_app_share
            ):
                remedy = "restart_app"
            return Fault(component.name, "software", action, now, _code(component.name), seconds, remedy=remedy)
        override = self.spec.components.get(component.name)
        share = self.spec.repair.hardware_in_house_share
        if override is not None and override.in_house_share is not None:
            share = override.in_house_share
        action = RepairAction.RESET if self.repair_rng.random() < share else RepairAction.RMA
        remedy = None
        if action is RepairAction.RESET and component.category == "GPU":
            remedy = "reset_gpu" if self.remedy_rng.random() < self.spec.repair.gpu_reset_share else None
        return Fault(
            component.name,
            "hardware",
            action,
            now,
            _code(component.name),
            0.0,
            unreachable=component.name in NODE_DOWN_COMPONENTS,
            remedy=remedy,
        )

    # -- repair --------------------------------------------------------------------------------------------

    def in_house_seconds(self) -> float:
        return HOUR * spread_sample(self.repair_rng, self.spec.repair.hardware_in_house_hours)

    def rma_seconds(self, cls: FailureClass) -> float:
        rma = cls.rma
        if self.repair_rng.random() < rma.next_day_share:
            return DAY * (1.0 + 0.25 * self.repair_rng.random())
        return DAY * self.repair_rng.uniform(rma.min, rma.max)

    def returns_defective(self, cls: FailureClass) -> bool:
        return self.defect_rng.random() < cls.validation_failure

    def reban_after_seconds(self, cls: FailureClass) -> float | None:
        """When an admitted node will be banned again, or ``None``. Drawn within the re-ban window."""
        if self.defect_rng.random() >= cls.reban:
            return None
        window = self.spec.reban_window_days * DAY
        rate = 1.0 / (self.spec.reban_mean_days * DAY)
        # Inverse CDF of an exponential truncated to the window.
        u = self.defect_rng.random()
        return -math.log(1.0 - u * (1.0 - math.exp(-rate * window))) / rate

    def escaped_defect_seconds(self) -> float:
        """A defect validation missed shows up in service after a few days."""
        return self.defect_rng.expovariate(1.0 / (self.spec.reban_mean_days * DAY))


def _cumsum(values: list[float]) -> list[float]:
    out: list[float] = []
    total = 0.0
    for v in values:
        total += v
        out.append(total)
    return out
