"""The Slurm driver: gpufleet's cluster operations as ``scontrol``, ``sinfo``, ``squeue`` and ``scancel`` calls.

There is no maintained Python binding for current Slurm, so the driver runs Slurm's own commands, each with the
cluster's ``SLURM_CONF`` and with binaries found where the cluster's settings say. Every call has a timeout. A call
that times out or cannot reach slurmctld raises a retryable ``DriverError``, so a caller never mistakes "Slurm did
not answer" for "Slurm said no"; nothing the driver does is assumed to have happened until Slurm reports it.

Mapping (scontrol(1), 22.05 and later):
- cordon: ``update nodename=N state=drain reason="gpufleet[ref] ..."``; uncordon: ``state=resume``.
- drain: cordon, then list the node's jobs; past the deadline ``scancel --nodelist=N`` ends what is left.
- reboot: ``reboot ASAP nextstate=RESUME reason=... N`` (``nextstate=DOWN`` when gpufleet keeps holding the node);
  ``cancel_reboot N``.
- maintenance: a reservation ``flags=maint,ignore_jobs`` per node (the maintenance taint) or per maintenance.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gpufleet.adapters.drivers.base import (
    MAINTENANCE_TAINT,
    DrainStatus,
    DriverError,
    NodeStatus,
    PowerState,
    PowerStatus,
    SiteValidation,
    Taint,
    UnknownNode,
    Work,
)
from gpufleet.adapters.drivers.ownership import HeldByOthers, is_ours, tag_reason
from gpufleet.adapters.drivers.slurm_states import (
    SQUEUE_FORMAT,
    SlurmJob,
    SlurmNode,
    SlurmParseError,
    SlurmReservation,
    parse_reservations,
    parse_scontrol_nodes,
    parse_sinfo_json,
    parse_squeue,
)
from gpufleet.domain.clock import Clock

log = logging.getLogger("gpufleet.drivers.slurm")

COMMANDS = ("scontrol", "sinfo", "squeue", "scancel")
_UNREACHABLE = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "slurm_load",
    "zero bytes were transmitted",
    "communication connection failure",
    "unable to connect",
    "munge",
)


@dataclass(frozen=True)
class SlurmSettings:
    """A cluster's Slurm settings: where its configuration and commands are. Nothing secret lives here: Slurm
    authenticates through munge on the host, so only paths are stored."""

    conf: str | None = None
    bin_dir: str | None = None
    commands: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 30.0
    reservation_user: str = "root"

    def command(self, name: str) -> str:
        if name in self.commands:
            return self.commands[name]
        return str(Path(self.bin_dir) / name) if self.bin_dir else name


@dataclass
class CommandStats:
    """Time spent waiting on Slurm's commands, so gpufleet's own overhead can be told apart from Slurm's."""

    calls: int = 0
    seconds: float = 0.0

    def reset(self) -> None:
        self.calls = 0
        self.seconds = 0.0


class SlurmDriver(SiteValidation):
    """One Slurm cluster. Every operation is idempotent: it reads the node first and does only what is missing."""

    scheduler = "Slurm"

    def __init__(self, cluster: str, settings: SlurmSettings, clock: Clock) -> None:
        self._cluster = cluster
        self.settings = settings
        self.clock = clock
        self.stats = CommandStats()
        self._lock = threading.Lock()

    @property
    def cluster(self) -> str:
        return self._cluster

    # -- running commands ----------------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.settings.conf:
            env["SLURM_CONF"] = self.settings.conf
        return env

    def run(self, name: str, args: Sequence[str], node: str | None = None) -> str:
        """Run one Slurm command; its stdout, or a DriverError saying whether trying again may help."""
        argv = [self.settings.command(name), *args]
        started = time.perf_counter()
        try:
            done = subprocess.run(
                argv,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=self.settings.timeout_seconds,
                check=False,
            )
        except FileNotFoundError:
            raise DriverError(
                f"{name} not found at '{argv[0]}' for cluster '{self._cluster}'; set the cluster's bin_dir", node=node
            ) from None
        except subprocess.TimeoutExpired:
            raise DriverError(
                f"{name} {args[0] if args else ''} did not answer within {self.settings.timeout_seconds:g} s "
                f"on cluster '{self._cluster}'",
                node=node,
                retryable=True,
            ) from None
        finally:
            with self._lock:
                self.stats.calls += 1
                self.stats.seconds += time.perf_counter() - started
        log.debug("cluster=%s command=%s rc=%s", self._cluster, " ".join(argv[:3]), done.returncode)
        if done.returncode != 0:
            message = " ".join((done.stderr or done.stdout or f"exit status {done.returncode}").split())
            lowered = message.lower()
            if node is not None and ("invalid node name" in lowered or f"node {node.lower()} not found" in lowered):
                raise UnknownNode(node, self._cluster)
            retryable = any(marker in lowered for marker in _UNREACHABLE)
            what = f"{name} {args[0] if args else ''}".strip()
            raise DriverError(f"{what} failed on '{self._cluster}': {message}", node, retryable)
        return done.stdout

    # -- reading -------------------------------------------------------------------------------------------------

    def slurm_node(self, node: str) -> SlurmNode:
        text = self.run("scontrol", ["show", "node", "-o", node], node=node)
        try:
            nodes = parse_scontrol_nodes(text)
        except SlurmParseError as exc:
            raise DriverError(str(exc), node=node) from None
        if not nodes:
            raise UnknownNode(node, self._cluster)
        return nodes[0]

    def slurm_nodes(self) -> list[SlurmNode]:
        """Every node in one call: ``sinfo --json``, or ``scontrol show node`` where sinfo has no JSON output."""
        try:
            return parse_sinfo_json(self.run("sinfo", ["--json"]))
        except DriverError as exc:
            if exc.retryable:
                raise
        except SlurmParseError:
            pass
        return parse_scontrol_nodes(self.run("scontrol", ["show", "node", "-o"]))

    def jobs(self, node: str | None = None) -> list[SlurmJob]:
        """Running and completing jobs, on one node or everywhere."""
        args = ["-h", "-t", "RUNNING,COMPLETING", "-o", SQUEUE_FORMAT]
        if node is not None:
            args += ["-w", node]
        try:
            return parse_squeue(self.run("squeue", args, node=node))
        except SlurmParseError as exc:
            raise DriverError(str(exc), node=node) from None

    def reservations(self) -> list[SlurmReservation]:
        text = self.run("scontrol", ["show", "reservation", "-o"])
        return [] if "No reservations" in text else parse_reservations(text)

    # -- the ClusterDriver interface ---------------------------------------------------------------------------

    def cordon(self, node: str, reason: str) -> None:
        current = self.slurm_node(node)
        wanted = tag_reason(reason)
        if current.drain and (not is_ours(current.reason) or (current.reason or "").startswith(wanted)):
            return  # already held: by someone else (kept as it is, theirs to lift) or by us for this reason
        self.run("scontrol", ["update", f"nodename={node}", "state=drain", f"reason={wanted}"], node=node)

    def uncordon(self, node: str, reason: str, override: bool = False) -> None:
        """Return the node to service. A hold someone else put on it is lifted only with ``override``."""
        current = self.slurm_node(node)
        if not (current.drain or current.down):
            return
        if current.reboot_pending:
            raise DriverError(f"node '{node}' has a reboot pending; cancel it before resuming", node=node)
        if not is_ours(current.reason) and not override:
            raise HeldByOthers(node, current.reason, current.reason_user)
        self.run("scontrol", ["update", f"nodename={node}", "state=resume"], node=node)

    def drain(self, node: str, reason: str, deadline: datetime) -> DrainStatus:
        self.cordon(node, reason)
        jobs = self.jobs(node)
        forced: tuple[Work, ...] = ()
        if jobs and self.clock.now() >= deadline:
            running = [j for j in jobs if j.state != "COMPLETING"]
            if running:
                self.run("scancel", ["--nodelist", node], node=node)
                forced = tuple(_work(j) for j in running)
        remaining = tuple(_work(j) for j in jobs)
        if not remaining and self.slurm_node(node).busy:
            remaining = (Work(f"{node}/completing", "job", self.clock.now()),)
        return DrainStatus(node, deadline, remaining=remaining, forced=forced)

    def set_maintenance_taint(self, node: str, reason: str) -> None:
        self.create_reservation(node_reservation(node), [node], reason)

    def clear_maintenance_taint(self, node: str) -> None:
        self.delete_reservation(node_reservation(node))

    def reboot(self, node: str, reason: str, hold: bool = False) -> None:
        """``scontrol reboot ASAP``: Slurm drains the node, reboots it once idle, then resumes it (``hold``: leaves
        it DOWN for gpufleet to return, so no job lands before validation)."""
        current = self.slurm_node(node)
        if current.reboot_pending:
            return
        next_state = "DOWN" if hold else "RESUME"
        self.run(
            "scontrol", ["reboot", "ASAP", f"nextstate={next_state}", f"reason={tag_reason(reason)}", node], node=node
        )

    def cancel_reboot(self, node: str) -> None:
        current = self.slurm_node(node)
        if current.reboot_issued:
            raise DriverError(f"the reboot of '{node}' was already issued and cannot be cancelled", node=node)
        if current.reboot_requested:
            self.run("scontrol", ["cancel_reboot", node], node=node)

    def power_status(self, node: str) -> PowerStatus:
        return power_of(self.slurm_node(node))

    def node_status(self, node: str) -> NodeStatus:
        current = self.slurm_node(node)
        running = tuple(_work(j) for j in self.jobs(node)) if current.busy else ()
        return status_of(current, running)

    # -- beyond the common interface ---------------------------------------------------------------------------

    def list_nodes(self) -> list[NodeStatus]:
        """Every node with its running work, in two calls whatever the cluster's size."""
        nodes = self.slurm_nodes()
        by_node: dict[str, list[Work]] = {}
        if any(n.busy for n in nodes):
            for job in self.jobs():
                for name in job.nodes:
                    by_node.setdefault(name, []).append(_work(job))
        return [status_of(n, tuple(by_node.get(n.name, ()))) for n in nodes]

    def create_reservation(
        self,
        name: str,
        nodes: Sequence[str],
        reason: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> SlurmReservation:
        """A maintenance reservation (``flags=maint,ignore_jobs``); an existing one of that name is kept as it is.

        Slurm 22.05 reservations carry no comment, so the name carries gpufleet's maintenance id instead."""
        existing = {r.name: r for r in self.reservations()}
        if name in existing:
            return existing[name]
        when = ["starttime=now"] if start is None else [f"starttime={_slurm_time(start)}"]
        when += ["duration=infinite"] if end is None else [f"endtime={_slurm_time(end)}"]
        self.run(
            "scontrol",
            [
                "create",
                "reservation",
                f"reservationname={name}",
                *when,
                f"users={self.settings.reservation_user}",
                "flags=maint,ignore_jobs",
                f"nodes={','.join(nodes)}",
            ],
        )
        log.info("cluster=%s reservation=%s nodes=%d reason=%s", self._cluster, name, len(nodes), reason[:80])
        created = {r.name: r for r in self.reservations()}
        if name not in created:
            raise DriverError(f"reservation '{name}' was not created on '{self._cluster}'", retryable=True)
        return created[name]

    def delete_reservation(self, name: str) -> None:
        if name not in {r.name for r in self.reservations()}:
            return
        self.run("scontrol", ["delete", f"reservationname={name}"])

    def check(self) -> dict[str, Any]:
        """Can the driver reach slurmctld, and what does it see: version, node counts by state, held nodes."""
        ping = " ".join(self.run("scontrol", ["ping"]).split())
        version = self.run("sinfo", ["--version"]).strip()
        nodes = self.slurm_nodes()
        states: dict[str, int] = {}
        for n in nodes:
            states[n.state] = states.get(n.state, 0) + 1
        return {
            "driver": "slurm",
            "reachable": "UP" in ping,
            "controller": ping,
            "version": version,
            "nodes": len(nodes),
            "states": dict(sorted(states.items())),
        }


def node_reservation(node: str) -> str:
    return f"gpufleet-maint-{node}"


def _slurm_time(when: datetime) -> str:
    return when.astimezone().strftime("%Y-%m-%dT%H:%M:%S")


def _work(job: SlurmJob) -> Work:
    started = job.started_at or datetime.fromtimestamp(0).astimezone()
    return Work(job.id, "job", started, job.ends_at, job.node_count)


def power_of(node: SlurmNode) -> PowerStatus:
    if node.powered_down:
        power = PowerState.OFF
    elif node.not_responding or node.down:
        power = PowerState.UNKNOWN
    else:
        power = PowerState.ON
    reachable = not node.not_responding and not node.down and not node.reboot_issued
    return PowerStatus(node.name, power, reachable, node.boot_time, node.reboot_pending)


def status_of(node: SlurmNode, running: tuple[Work, ...]) -> NodeStatus:
    taints = (Taint(MAINTENANCE_TAINT, "slurm-maint"),) if node.maintenance else ()
    owner = "" if not node.reason else ("gpufleet" if is_ours(node.reason) else "other")
    extra = {"slurm_state": node.state, "owner": owner}
    if node.reason_user:
        extra["reason_user"] = node.reason_user
    if node.reason_at:
        extra["reason_at"] = node.reason_at.isoformat()
    if node.reboot_timed_out:
        extra["reboot_timed_out"] = "true"
    return NodeStatus(
        node=node.name,
        schedulable=node.schedulable,
        power=power_of(node),
        taints=taints,
        running=running,
        native_state=node.state,
        reason=node.reason,
        draining=node.draining,
        extra=extra,
    )
