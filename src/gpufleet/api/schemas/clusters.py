"""What the cluster driver routes answer. Read from gpufleet.clusters.drivers and .sync (and each driver's check)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, with_config
from typing_extensions import TypedDict

from gpufleet.api.schemas import Out


class DriverOut(Out):
    cluster: str
    driver: Literal["simulated", "slurm", "kubernetes"]
    config: dict[str, Any]


@with_config(extra="forbid")
class ClusterCheckOut(TypedDict):
    """Whether the driver reaches the scheduler and what it sees there; the members beyond `reachable` depend on
    the driver and on the answer."""

    cluster: str
    driver: str
    reachable: bool
    detail: NotRequired[str]
    error: NotRequired[Annotated[str, Field(description="Why the scheduler could not be reached.")]]
    retryable: NotRequired[bool]
    controller: NotRequired[str]
    version: NotRequired[str]
    nodes: NotRequired[int]
    states: NotRequired[Annotated[dict[str, int], Field(description="Nodes by the scheduler's own state.")]]


class SyncReportOut(Out):
    cluster: str
    driver: str
    at: datetime
    reachable: bool
    error: str | None
    skipped: bool = Field(description="Another process was syncing the cluster.")
    nodes: int
    observed: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    transitions: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    escalated: list[dict[str, Any]]
    held_outside: list[dict[str, Any]]
    unknown_to_gpufleet: list[str] = Field(description="Scheduler nodes gpufleet does not know.")
    missing_in_cluster: list[str] = Field(description="Nodes of the cluster the scheduler does not show.")


class ResumeOut(Out):
    node: str = Field(description="The hostname.")
    cluster: str
    resumed: bool
    override: bool


class SchedulerRebootOut(Out):
    node: str = Field(description="The hostname.")
    cluster: str
    reboot: Literal["requested"]
    hold: bool = Field(description="The node stays out of service after the reboot.")
