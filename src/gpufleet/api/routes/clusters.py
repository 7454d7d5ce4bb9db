"""Cluster drivers over HTTP: choose a cluster's driver, check that it reaches the scheduler, reconcile once."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gpufleet.api.auth import Admin, Operator, Viewer
from gpufleet.api.deps import Db
from gpufleet.api.responses import ValueJSONResponse
from gpufleet.api.schemas import AUTH, problems
from gpufleet.api.schemas.clusters import ClusterCheckOut, DriverOut, ResumeOut, SchedulerRebootOut, SyncReportOut
from gpufleet.clusters.drivers import set_cluster_driver
from gpufleet.clusters.sync import check_cluster, reboot_in_scheduler, resume_in_scheduler, sync_cluster

router = APIRouter(prefix="/clusters", tags=["clusters"], responses=AUTH)
NO_CLUSTER = (404, "No such cluster")
NO_NODE = (404, "No such node")
SCHEDULER = (502, "The scheduler refused or did not answer")


class DriverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    driver: Literal["simulated", "slurm", "kubernetes"]
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Driver settings: paths (conf, bin_dir, kubeconfig), names (context), numbers. Never a "
        "credential itself: settings that look like one are refused.",
    )


class NodeActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Field(min_length=1, max_length=2000)
    override: bool = Field(default=False, description="resume: also lift a hold someone else put on the node.")


@router.put(
    "/{cluster}/driver",
    response_model=DriverOut,
    summary="Switch a cluster to a driver (admin)",
    responses=problems(NO_CLUSTER, 413, (422, "A setting is unknown, not a path, or a secret")),
)
def put_driver(cluster: str, body: DriverIn, actor: Admin, db: Db) -> ValueJSONResponse:
    target = set_cluster_driver(db, cluster, body.driver, body.config, actor)
    return ValueJSONResponse({"cluster": target.name, "driver": target.driver, "config": dict(target.config)})


@router.get(
    "/{cluster}/check",
    response_model=ClusterCheckOut,
    summary="Whether the driver reaches the scheduler, and what it sees",
    responses=problems(NO_CLUSTER, 422),
)
async def get_check(cluster: str, actor: Viewer, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(await run_in_threadpool(check_cluster, db, cluster, actor))


@router.post(
    "/{cluster}/sync",
    response_model=SyncReportOut,
    summary="Reconcile once, both ways (operator)",
    responses=problems(NO_CLUSTER, 422),
)
async def post_sync(cluster: str, actor: Operator, db: Db) -> ValueJSONResponse:
    report = await run_in_threadpool(sync_cluster, db, cluster, actor)
    return ValueJSONResponse(report.as_dict())


@router.post(
    "/nodes/{node}/resume",
    response_model=ResumeOut,
    summary="Return a node to the scheduler's service (override: also someone else's hold)",
    responses=problems(
        NO_NODE,
        (409, "Someone else holds the node in the scheduler: resume with override to lift their hold"),
        413,
        (422, "Invalid input, or gpufleet itself holds the node (move it through its lifecycle instead)"),
        SCHEDULER,
    ),
)
async def post_resume(node: str, body: NodeActionIn, actor: Operator, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(await run_in_threadpool(resume_in_scheduler, db, node, body.reason, actor, body.override))


@router.post(
    "/nodes/{node}/reboot",
    response_model=SchedulerRebootOut,
    summary="Ask the scheduler to reboot a node; sync records whether it came back",
    responses=problems(NO_NODE, 413, 422, SCHEDULER),
)
async def post_reboot(node: str, body: NodeActionIn, actor: Operator, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(await run_in_threadpool(reboot_in_scheduler, db, node, body.reason, actor))
