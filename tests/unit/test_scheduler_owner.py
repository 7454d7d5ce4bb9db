"""Only the Scheduler changes a cluster's scheduler: held by reading the source, so a new caller cannot slip past.

The rule, checked on every module under ``src/gpufleet`` except the drivers themselves (``adapters/``) and the owner
(``clusters/scheduler.py``): a call ``<receiver>.<name>(...)``, where ``<name>`` is one of the driver's
state-changing methods (``ACTIONS``), is allowed only when ``<receiver>`` is the name ``scheduler`` or an attribute
named ``scheduler`` (``scheduler.cordon``, ``s.scheduler.drain``, ``self.scheduler.uncordon``). Anything else is
taken for a driver: ``driver.cordon``, ``self.driver.drain``, ``node.driver.uncordon``, and also a call result such as
``book.scheduler(session, 1).cordon`` (name the scheduler first, so the rule can see what it is). The rule reads
names, not types; it is a tripwire for the common slip, not a proof: ``getattr(driver, "cordon")()`` or a bound method
passed around under another name gets past it.
"""

from __future__ import annotations

import ast
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gpufleet.adapters.drivers.base import (
    DrainStatus,
    DriverError,
    NodeStatus,
    PowerState,
    PowerStatus,
    ValidationResult,
    ValidationRun,
    ValidationState,
    ValidationSuite,
)
from gpufleet.adapters.drivers.simulated import SimulatedDriver, SimulatedWorld
from gpufleet.clusters.drivers import ClusterTarget, DriverRegistry
from gpufleet.clusters.scheduler import Scheduler, SkillMissing
from gpufleet.platform.clock import ManualClock
from gpufleet.remediation.runtime import ClusterBook, ClusterFacts

SRC = Path(__file__).resolve().parents[2] / "src" / "gpufleet"
EXEMPT = (SRC / "adapters", SRC / "clusters" / "scheduler.py")
ACTIONS = frozenset(
    {
        "cordon",
        "uncordon",
        "drain",
        "reboot",
        "reset_gpu",
        "restart_workload",
        "reimage",
        "set_maintenance_taint",
        "clear_maintenance_taint",
        "start_validation",
    }
)
START = datetime(2026, 1, 1, tzinfo=UTC)


def _is_scheduler(receiver: ast.expr) -> bool:
    if isinstance(receiver, ast.Name):
        return receiver.id == "scheduler"
    if isinstance(receiver, ast.Attribute):
        return receiver.attr == "scheduler"
    return False


def offences(source: str, where: str = "<snippet>") -> list[str]:
    """Each call of a state-changing method on something not named a scheduler, as ``where:line: text``."""
    found = []
    for call in ast.walk(ast.parse(source)):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        if call.func.attr in ACTIONS and not _is_scheduler(call.func.value):
            found.append(f"{where}:{call.lineno}: {ast.unparse(call.func)}(...)")
    return found


def _modules() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if not any(p == e or e in p.parents for e in EXEMPT)]


def test_nothing_but_the_scheduler_changes_a_cluster() -> None:
    found = [o for p in _modules() for o in offences(p.read_text(), str(p.relative_to(SRC)))]
    assert not found, "call these through a clusters.scheduler.Scheduler instead:\n" + "\n".join(found)


def test_the_scan_sees_the_callers_it_holds() -> None:
    """A scan that read nothing (a moved tree, an exemption too wide) would pass the rule above without meaning it."""
    calls = {
        str(p.relative_to(SRC))
        for p in _modules()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ACTIONS
    }
    assert {"clusters/sync.py", "remediation/engine.py", "remediation/repair.py", "sim/operator.py"} <= calls


@pytest.mark.parametrize(
    "source",
    [
        "driver.cordon(host, 'r')",
        "self.driver.drain(host, 'r', deadline)",
        "node.driver.uncordon(host, 'r')",
        "s.driver.reboot(host, 'r')",
        "act(lambda: self.driver.set_maintenance_taint(host, 'r'))",
        "book.scheduler(session, 1).start_validation(host, suite)",
        "schedulers[0].clear_maintenance_taint(host)",
        "my_scheduler.reset_gpu(host, 0, 'r')",
    ],
)
def test_the_rule_catches_a_driver_called_directly(source: str) -> None:
    assert len(offences(source)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "scheduler.cordon(host, 'r')",
        "s.scheduler.drain(host, 'r', deadline)",
        "self.scheduler.uncordon(host, 'r', override=True)",
        "driver.power_status(host)",
        "driver.validation_result(host, run)",
        "cordon(host, 'r')",
    ],
)
def test_the_rule_lets_the_scheduler_and_reads_through(source: str) -> None:
    assert offences(source) == []


# ---------------------------------------------------------------------------------------------------------------
# The Scheduler itself.


class PlainDriver:
    """The core interface and nothing more, recording each call with its keyword arguments."""

    def __init__(self, cluster: str = "c1") -> None:
        self._cluster = cluster
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    @property
    def cluster(self) -> str:
        return self._cluster

    def _call(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def cordon(self, node: str, reason: str) -> None:
        self._call("cordon", node, reason)

    def uncordon(self, node: str, reason: str) -> None:
        self._call("uncordon", node, reason)

    def drain(self, node: str, reason: str, deadline: datetime) -> DrainStatus:
        self._call("drain", node, reason, deadline)
        return DrainStatus(node, deadline)

    def set_maintenance_taint(self, node: str, reason: str) -> None:
        self._call("set_maintenance_taint", node, reason)

    def clear_maintenance_taint(self, node: str) -> None:
        self._call("clear_maintenance_taint", node)

    def reboot(self, node: str, reason: str) -> None:
        self._call("reboot", node, reason)

    def power_status(self, node: str) -> PowerStatus:
        return PowerStatus(node, PowerState.ON, True)

    def start_validation(self, node: str, suite: ValidationSuite) -> ValidationRun:
        self._call("start_validation", node, suite.name)
        return ValidationRun("run-1", node, suite.name, START)

    def validation_result(self, node: str, run_id: str) -> ValidationResult:
        return ValidationResult(run_id, node, "s", ValidationState.PASSED)

    def node_status(self, node: str) -> NodeStatus:
        return NodeStatus(node, True, self.power_status(node))


UNSET: Any = object()
"""A keyword's default here, so a call that left it out is told apart from one that passed the default."""


class SlurmLikeDriver(PlainDriver):
    """Every optional skill and keyword, as the richest drivers have them."""

    def uncordon(self, node: str, reason: str, override: Any = UNSET) -> None:
        self._call("uncordon", node, reason, **({} if override is UNSET else {"override": override}))

    def reboot(self, node: str, reason: str, hold: Any = UNSET) -> None:
        self._call("reboot", node, reason, **({} if hold is UNSET else {"hold": hold}))

    def reimage(self, node: str, reason: str) -> None:
        self._call("reimage", node, reason)

    def reset_gpu(self, node: str, gpu_index: int | None, reason: str) -> None:
        self._call("reset_gpu", node, gpu_index, reason)

    def restart_workload(self, node: str, reason: str) -> None:
        self._call("restart_workload", node, reason)

    def list_nodes(self) -> list[NodeStatus]:
        return [self.node_status("n1")]


def test_a_plain_driver_reports_no_skills_and_refuses_them() -> None:
    scheduler = Scheduler(PlainDriver())
    assert not scheduler.can_reset_gpu
    assert not scheduler.can_restart_workload
    assert not scheduler.can_reimage
    assert not scheduler.can_list_nodes
    assert not scheduler.takes_override and not scheduler.takes_hold
    with pytest.raises(SkillMissing):
        scheduler.reset_gpu("n1", 0, "r")
    with pytest.raises(SkillMissing):
        scheduler.restart_workload("n1", "r")
    with pytest.raises(DriverError):
        scheduler.list_nodes()


def test_the_optional_keywords_reach_only_drivers_that_take_them() -> None:
    plain = PlainDriver()
    Scheduler(plain).uncordon("n1", "back", override=True)
    Scheduler(plain).reboot("n1", "again", hold=True, reimage=True)
    assert plain.calls == [("uncordon", ("n1", "back"), {}), ("reboot", ("n1", "again"), {})]

    rich = SlurmLikeDriver()
    scheduler = Scheduler(rich)
    assert scheduler.takes_override and scheduler.takes_hold and scheduler.can_reimage
    scheduler.uncordon("n1", "back", override=True)
    scheduler.uncordon("n1", "back")
    scheduler.reboot("n1", "again", hold=False)
    scheduler.reboot("n1", "again")
    scheduler.reboot("n1", "fresh", hold=True, reimage=True)
    assert rich.calls == [
        ("uncordon", ("n1", "back"), {"override": True}),
        ("uncordon", ("n1", "back"), {}),
        ("reboot", ("n1", "again"), {"hold": False}),
        ("reboot", ("n1", "again"), {}),
        ("reimage", ("n1", "fresh"), {}),
    ]


def test_the_simulated_driver_resets_and_restarts_but_does_not_reimage() -> None:
    world = SimulatedWorld(ManualClock(START), seed=1)
    scheduler = Scheduler(SimulatedDriver(world, "c1"))
    assert scheduler.can_reset_gpu and scheduler.can_restart_workload
    assert not scheduler.can_reimage and not scheduler.can_list_nodes
    assert not scheduler.takes_override and not scheduler.takes_hold
    assert scheduler.cluster == "c1"


def test_each_change_is_logged_once_with_cluster_action_node_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    driver = SlurmLikeDriver("west")
    scheduler = Scheduler(driver)
    caplog.set_level(logging.INFO, logger="gpufleet.clusters.scheduler")
    scheduler.cordon("n1", "case 7")
    scheduler.drain("n1", "case 7", START)
    scheduler.reset_gpu("n1", 3, "case 7")
    scheduler.power_status("n1")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert messages[0] == "cluster=west action=cordon node=n1 reason=case 7"
    assert messages[1].startswith("cluster=west action=drain node=n1 reason=case 7 deadline=")
    assert messages[2] == "cluster=west action=reset_gpu node=n1 reason=case 7 gpu=3"
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_remediation_keeps_one_scheduler_per_cluster_until_its_driver_changes() -> None:
    """Like the driver it wraps: built once, rebuilt when the registry hands out another driver."""
    registry = DriverRegistry(ManualClock(START))
    book = ClusterBook(registry)
    book.clusters[1] = ClusterFacts(1, "c1", ClusterTarget("c1", "gpu"))
    session: Any = None  # the facts are cached, so the book reads nothing
    first = book.scheduler(session, 1)
    assert book.scheduler(session, 1) is first
    registry.register("simulated", lambda target, _clock: SlurmLikeDriver(target.name))
    second = book.scheduler(session, 1)
    assert second is not first and isinstance(second.driver, SlurmLikeDriver)
