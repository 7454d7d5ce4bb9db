"""The one owner of every change gpufleet makes to a cluster's scheduler.

Sync, remediation and the simulator's people all act on the same nodes. Routing each change through one object per
cluster gives one place to log it, one place that knows which optional skills a driver has (a GPU reset, a workload
restart, a reimage, Slurm's ``hold`` and ``override``), and one place a guard test can hold the rest of the code to:
nothing outside the drivers and this module calls a driver's state-changing methods.

Reads pass straight through; they are here so callers need no second handle on the driver.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from gpufleet.adapters.drivers.base import (
    ClusterDriver,
    DrainStatus,
    DriverError,
    NodeStatus,
    PowerStatus,
    ValidationResult,
    ValidationRun,
    ValidationSuite,
)

log = logging.getLogger("gpufleet.clusters.scheduler")


# ---------------------------------------------------------------------------------------------------------------
# Skills beyond the core driver interface. A driver that lacks one gets the next rung instead.


@runtime_checkable
class ResetsGpus(Protocol):
    def reset_gpu(self, node: str, gpu_index: int | None, reason: str) -> None:
        """Reset one GPU (all when ``gpu_index`` is None): ``nvidia-smi -r`` with nothing running on it."""


@runtime_checkable
class RestartsWorkload(Protocol):
    def restart_workload(self, node: str, reason: str) -> None:
        """Restart the node's GPU services and requeue its work (fabric manager, persistence daemon, the job)."""


@runtime_checkable
class Reimages(Protocol):
    def reimage(self, node: str, reason: str) -> None:
        """Reinstall the node's image; completes like a reboot, observed through ``power_status``."""


@runtime_checkable
class ListsNodes(Protocol):
    def list_nodes(self) -> list[NodeStatus]: ...


def _accepts(method: Callable[..., Any], parameter: str) -> bool:
    """Whether a driver's method takes an option beyond the common interface (Slurm's ``hold``, ``override``)."""
    return parameter in inspect.signature(method).parameters


class SkillMissing(DriverError):
    """A caller asked for a skill the driver lacks; callers check the ``can_*`` properties first."""


class Scheduler:
    """One cluster's scheduler as gpufleet acts on it: the driver's calls, each logged, with its skills known.

    The skills are read once here, because a driver's class does not change under it and looking them up on every
    call (protocol checks, signatures) would cost the simulator's hot loop for nothing.
    """

    def __init__(self, driver: ClusterDriver) -> None:
        self._driver = driver
        self._resets: ResetsGpus | None = driver if isinstance(driver, ResetsGpus) else None
        self._restarts: RestartsWorkload | None = driver if isinstance(driver, RestartsWorkload) else None
        self._reimages: Reimages | None = driver if isinstance(driver, Reimages) else None
        self._lists: ListsNodes | None = driver if isinstance(driver, ListsNodes) else None
        self._override = _accepts(driver.uncordon, "override")
        self._hold = _accepts(driver.reboot, "hold")

    @property
    def driver(self) -> ClusterDriver:
        """The wrapped driver, for telling whether a cached scheduler still fits (never for acting through)."""
        return self._driver

    @property
    def cluster(self) -> str:
        return self._driver.cluster

    # -- skills -----------------------------------------------------------------------------------------------

    @property
    def can_reset_gpu(self) -> bool:
        return self._resets is not None

    @property
    def can_restart_workload(self) -> bool:
        return self._restarts is not None

    @property
    def can_reimage(self) -> bool:
        return self._reimages is not None

    @property
    def can_list_nodes(self) -> bool:
        return self._lists is not None

    @property
    def takes_override(self) -> bool:
        """The driver can lift a hold someone else made (``uncordon(..., override=True)``)."""
        return self._override

    @property
    def takes_hold(self) -> bool:
        """The driver can keep a rebooted node out of service until gpufleet returns it (``reboot(..., hold=)``)."""
        return self._hold

    # -- changes ----------------------------------------------------------------------------------------------

    def _log(self, action: str, node: str, reason: str | None, **detail: Any) -> None:
        if not log.isEnabledFor(logging.INFO):
            return  # the simulator makes thousands of these calls with logging off
        extra = "".join(f" {k}={v}" for k, v in detail.items())
        log.info("cluster=%s action=%s node=%s reason=%s%s", self.cluster, action, node, reason, extra)

    def cordon(self, node: str, reason: str) -> None:
        self._log("cordon", node, reason)
        self._driver.cordon(node, reason)

    def uncordon(self, node: str, reason: str, override: bool | None = None) -> None:
        """``override`` reaches only drivers that tell holds apart (the others lift whatever hold there is), and only
        when given, so a driver's own default stands otherwise."""
        if override is not None and self._override:
            self._log("uncordon", node, reason, override=override)
            self._driver.uncordon(node, reason, override=override)  # type: ignore[call-arg]
        else:
            self._log("uncordon", node, reason)
            self._driver.uncordon(node, reason)

    def drain(self, node: str, reason: str, deadline: datetime) -> DrainStatus:
        self._log("drain", node, reason, deadline=deadline.isoformat())
        return self._driver.drain(node, reason, deadline)

    def set_maintenance_taint(self, node: str, reason: str) -> None:
        self._log("set_maintenance_taint", node, reason)
        self._driver.set_maintenance_taint(node, reason)

    def clear_maintenance_taint(self, node: str, reason: str | None = None) -> None:
        """The driver takes no reason; one given here is only logged."""
        self._log("clear_maintenance_taint", node, reason)
        self._driver.clear_maintenance_taint(node)

    def reboot(self, node: str, reason: str, hold: bool | None = None, reimage: bool = False) -> None:
        """``reimage`` falls back to a reboot on a driver that cannot reimage, as the ladder's next-best rung;
        ``hold`` reaches only drivers that can keep a rebooted node out of service, and only when given."""
        if reimage and self._reimages is not None:
            self._log("reimage", node, reason)
            self._reimages.reimage(node, reason)
        elif hold is not None and self._hold:
            self._log("reboot", node, reason, hold=hold)
            self._driver.reboot(node, reason, hold=hold)  # type: ignore[call-arg]
        else:
            self._log("reboot", node, reason)
            self._driver.reboot(node, reason)

    def reset_gpu(self, node: str, gpu_index: int | None, reason: str) -> None:
        if self._resets is None:
            raise SkillMissing(f"the driver of '{self.cluster}' cannot reset a GPU", node=node)
        self._log("reset_gpu", node, reason, gpu=gpu_index)
        self._resets.reset_gpu(node, gpu_index, reason)

    def restart_workload(self, node: str, reason: str) -> None:
        if self._restarts is None:
            raise SkillMissing(f"the driver of '{self.cluster}' restarts no workload", node=node)
        self._log("restart_workload", node, reason)
        self._restarts.restart_workload(node, reason)

    def start_validation(self, node: str, suite: ValidationSuite) -> ValidationRun:
        self._log("start_validation", node, None, suite=suite.name)
        return self._driver.start_validation(node, suite)

    # -- reads ------------------------------------------------------------------------------------------------

    def power_status(self, node: str) -> PowerStatus:
        return self._driver.power_status(node)

    def node_status(self, node: str) -> NodeStatus:
        return self._driver.node_status(node)

    def validation_result(self, node: str, run_id: str) -> ValidationResult:
        return self._driver.validation_result(node, run_id)

    def list_nodes(self) -> list[NodeStatus]:
        if self._lists is None:
            raise SkillMissing(f"the driver of '{self.cluster}' cannot list its nodes")
        return self._lists.list_nodes()
