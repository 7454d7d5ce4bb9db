"""What the node routes answer: pages, one node with its timeline, edits and transitions, the summary, the
lifecycle table. Read from gpufleet.fleet.queries, .updates and .lifecycle and the route in routes/lifecycle.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, NotRequired

from pydantic import Field, with_config
from typing_extensions import TypedDict

from gpufleet.api.schemas import Out
from gpufleet.domain.lifecycle import NodeState


@with_config(extra="forbid")
class NodeListItem(TypedDict):
    """A node in a page: every member, or `id` and those named by `fields`."""

    id: Annotated[str, Field(description="The chassis id.")]
    serial: NotRequired[str]
    hostname: NotRequired[str]
    state: NotRequired[NodeState]
    state_since: NotRequired[datetime]
    version: NotRequired[Annotated[int, Field(description="Sent back as If-Match to change the node.")]]
    cluster: NotRequired[str]
    supplier: NotRequired[str]
    sku: NotRequired[str]
    gpus: NotRequired[Annotated[int, Field(description="GPUs per node of the SKU.")]]
    rack: NotRequired[str | None]
    nvlink_domain: NotRequired[str | None]
    switch: NotRequired[str | None]
    provider_id: NotRequired[str | None]
    bmc_address: NotRequired[str | None]
    labels: NotRequired[dict[str, str]]
    attributes: NotRequired[dict[str, Any]]
    created_at: NotRequired[datetime]
    updated_at: NotRequired[datetime]


class NodePageOut(Out):
    items: list[NodeListItem] = Field(description="Nodes, trimmed to `fields` when given.")
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page; null on the last page.")


class NodeLifecycleOut(Out):
    action: str = Field(description="What moves the node on from its state.")
    owner: str
    deadline: datetime | None = Field(description="When the state's time limit runs out; null without one.")
    overdue: bool
    allowed_events: list[str]


class GpuDeviceOut(Out):
    index: int
    serial: str | None
    uuid: str | None
    pci_bus_id: str | None


class NodeAllocationOut(Out):
    tenant: str
    project: str | None
    starts_at: datetime
    ends_at: datetime | None
    active: bool


class NodeEventOut(Out):
    """One entry of a node's timeline: a transition, an edit, an allocation, an action in its scheduler..."""

    id: int
    at: datetime
    kind: str = Field(description="transition, updated, moved, allocated, released, ...")
    event: str | None = Field(description="The lifecycle event, for a transition.")
    from_state: str | None
    to_state: str | None
    actor: str
    reason: str | None
    correlation_id: str
    cluster: str | None
    data: dict[str, Any]


class NodeOut(Out):
    """One node: its fields, what its lifecycle state asks for, its GPUs, allocations and timeline (newest first)."""

    id: str
    serial: str
    hostname: str
    state: NodeState
    state_since: datetime
    version: int
    cluster: str
    supplier: str
    sku: str
    gpus: int
    rack: str | None
    nvlink_domain: str | None
    switch: str | None
    provider_id: str | None
    bmc_address: str | None
    labels: dict[str, str]
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    lifecycle: NodeLifecycleOut
    gpu_devices: list[GpuDeviceOut]
    allocations: list[NodeAllocationOut]
    events: list[NodeEventOut] = Field(description="The timeline, newest first (the latest 500).")


class NodeUpdateOut(Out):
    id: str
    version: int
    changed: bool = Field(description="False when the patch changed nothing (no event was written).")
    labels: dict[str, str]
    attributes: dict[str, Any]
    at: datetime
    event_id: int | None


class TransitionOut(Out):
    id: str
    event: str
    from_state: NodeState
    state: NodeState
    version: int
    at: datetime
    event_id: int


class CountOut(Out):
    nodes: int
    gpus: int


class SummaryGroupOut(CountOut):
    state: NodeState
    cluster: str
    supplier: str
    sku: str


class SummaryOut(Out):
    nodes: int
    gpus: int
    gpus_in_service: int
    by_state: dict[NodeState, CountOut] = Field(description="Every state, zero counts included.")
    by_cluster: dict[str, CountOut]
    groups: list[SummaryGroupOut] = Field(description="Counts by state x cluster x supplier x SKU.")


class StateOut(Out):
    name: NodeState
    action: str
    owner: str
    time_limit_seconds: int | None
    final: bool
    capacity: bool = Field(description="Whether a node in this state counts as capacity.")
    allowed_events: list[str]


class LifecycleTransitionOut(Out):
    from_: NodeState = Field(alias="from")
    event: str
    to: NodeState
    why: str
    guards: list[str]


class LifecycleOut(Out):
    states: list[StateOut]
    events: list[str]
    transitions: list[LifecycleTransitionOut]
