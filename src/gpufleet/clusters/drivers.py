"""Which driver acts on which cluster: read from the cluster's ``driver`` and ``driver_config`` columns.

Drivers are registered by name so that Slurm and Kubernetes drivers (and a site's own) plug in beside the simulated
one without any caller changing. The simulated driver is the default, so a fresh install and the fleet simulator
work with no cluster attached. Instances are cached per cluster: a driver may hold connections or, for the
simulated one, the state of the simulated cluster itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gpufleet.adapters.drivers.base import ClusterDriver
from gpufleet.adapters.drivers.simulated import SimulatedDriver, SimulatedWorld
from gpufleet.clusters import store
from gpufleet.clusters.settings import check_driver_config, kubernetes_settings, slurm_settings
from gpufleet.platform.clock import Clock, SystemClock
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound

DEFAULT_DRIVER = "simulated"


@dataclass(frozen=True)
class ClusterTarget:
    """What a driver factory needs to know about the cluster it will act on."""

    name: str
    kind: str
    driver: str = DEFAULT_DRIVER
    config: Mapping[str, Any] = field(default_factory=dict)


DriverFactory = Callable[[ClusterTarget, Clock], ClusterDriver]

_SIMULATED_KEYS = {"seed", "reboot_no_return", "detect_per_pass", "boot_minutes"}


def _number(config: Mapping[str, Any], key: str, where: str, low: float, high: float, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidInput(f"expected a number from {low} to {high}, got {value!r}", field=f"{where}.{key}")
    return float(value)


class SimulatedFactory:
    """Builds simulated drivers that share one simulated world, so clusters of one registry see one fleet."""

    def __init__(self) -> None:
        self.world: SimulatedWorld | None = None

    def __call__(self, target: ClusterTarget, clock: Clock) -> ClusterDriver:
        where = f"clusters.{target.name}.driver_config"
        unknown = sorted(set(target.config) - _SIMULATED_KEYS)
        if unknown:
            allowed = ", ".join(sorted(_SIMULATED_KEYS))
            raise InvalidInput(f"unknown setting(s) {', '.join(unknown)}; allowed: {allowed}", field=where)
        if self.world is None:
            boot = target.config.get("boot_minutes", [8.0, 20.0])
            pair = isinstance(boot, list | tuple) and len(boot) == 2
            if not (pair and all(isinstance(b, int | float) and b > 0 for b in boot)):
                raise InvalidInput("expected [median, p90] in minutes", field=f"{where}.boot_minutes")
            self.world = SimulatedWorld(
                clock,
                seed=int(_number(target.config, "seed", where, 0, 2**63, 0)),
                boot_minutes=(float(boot[0]), float(boot[1])),
                reboot_no_return=_number(target.config, "reboot_no_return", where, 0.0, 1.0, 0.0),
                detect_per_pass=_number(target.config, "detect_per_pass", where, 0.0, 1.0, 0.35),
            )
        return SimulatedDriver(self.world, target.name)


def slurm_factory(target: ClusterTarget, clock: Clock) -> ClusterDriver:
    from gpufleet.adapters.drivers.slurm import SlurmDriver

    return SlurmDriver(target.name, slurm_settings(target.name, target.config), clock)


def kubernetes_factory(target: ClusterTarget, clock: Clock) -> ClusterDriver:
    from gpufleet.adapters.drivers.kubernetes import KubernetesDriver

    return KubernetesDriver(target.name, kubernetes_settings(target.name, target.config), clock)


class DriverRegistry:
    """Driver factories by name, and the driver instance of each cluster once made."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._factories: dict[str, DriverFactory] = {
            DEFAULT_DRIVER: SimulatedFactory(),
            "slurm": slurm_factory,
            "kubernetes": kubernetes_factory,
        }
        self._instances: dict[tuple[str, str, str], ClusterDriver] = {}
        self._lock = threading.Lock()

    def register(self, name: str, factory: DriverFactory) -> None:
        """Add or replace a driver. Replacing drops the instances it made, so the next use builds afresh."""
        with self._lock:
            self._factories[name] = factory
            for key in [k for k in self._instances if k[1] == name]:
                del self._instances[key]

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, target: ClusterTarget) -> ClusterDriver:
        # A cluster switched to other settings gets a new driver; the simulated world is kept across that.
        key = (target.name, target.driver, json.dumps(dict(target.config), sort_keys=True, default=str))
        with self._lock:
            driver = self._instances.get(key)
            if driver is not None:
                return driver
            factory = self._factories.get(target.driver)
            if factory is None:
                raise InvalidInput(
                    f"cluster '{target.name}' names driver '{target.driver}', which is not installed; "
                    f"installed: {', '.join(sorted(self._factories))}",
                    field="driver",
                )
            driver = factory(target, self.clock)
            self._instances[key] = driver
            return driver

    def for_cluster(self, db: Database, cluster: str) -> ClusterDriver:
        return self.create(cluster_target(db, cluster))


def cluster_target(db: Database, cluster: str) -> ClusterTarget:
    with db.reader() as session:
        row = store.cluster_driver(session, cluster)
    if row is None:
        raise NotFound(f"no cluster named '{cluster}'")
    return ClusterTarget(row.name, row.kind, row.driver or DEFAULT_DRIVER, dict(row.driver_config or {}))


def set_cluster_driver(
    db: Database, cluster: str, driver: str, config: Mapping[str, Any], actor: Actor
) -> ClusterTarget:
    """Switch a cluster to a driver. Settings are checked first: paths only, never a credential itself."""
    if actor.role < Role.ADMIN or actor.tenant_scoped:
        raise Forbidden("choosing a cluster's driver needs the admin role")
    clean = check_driver_config(cluster, driver, config)
    with db.transaction() as session:
        found = store.set_driver(session, cluster, driver, clean)
        if not found:
            raise NotFound(f"no cluster named '{cluster}'")
    return cluster_target(db, cluster)


_DEFAULT = DriverRegistry()


def default_registry() -> DriverRegistry:
    return _DEFAULT


def driver_for_cluster(db: Database, cluster: str, registry: DriverRegistry | None = None) -> ClusterDriver:
    """The driver that acts on ``cluster``, as its row in the database says."""
    return (registry or _DEFAULT).for_cluster(db, cluster)
