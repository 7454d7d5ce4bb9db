"""Allocations of nodes to tenants and projects: create, end (idempotent) and list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gpufleet.api.auth import Operator, Viewer
from gpufleet.api.deps import Db
from gpufleet.api.responses import JSONResponse, ValueJSONResponse
from gpufleet.api.schemas import AUTH, AllocationEndIn, AllocationIn, answer, problems
from gpufleet.api.schemas.fleet import AllocationEndOut, AllocationOut, AllocationsOut
from gpufleet.fleet.allocations import allocate, end_allocation, list_allocations
from gpufleet.platform.context import Actor
from gpufleet.platform.database import Database

router = APIRouter(tags=["allocations"], responses=AUTH)
NO_NODE = (404, "No such node")
NO_ALLOCATION = (404, "No such allocation")


@router.post(
    "/allocations",
    status_code=201,
    response_model=AllocationOut,
    summary="Allocate a node to a tenant and project",
    responses={
        **answer(200, AllocationOut, "The same request was already applied: the stored allocation"),
        **problems(
            NO_NODE,
            (409, "The node is held by another allocation in that window, or is leaving the fleet"),
            413,
            422,
        ),
    },
)
def post_allocation(body: AllocationIn, actor: Operator, db: Db) -> JSONResponse:
    """201 when created; 200 with the stored allocation when the same request was already applied."""
    result = allocate(db, body.node, body.tenant, actor, body.project, body.starts_at, body.ends_at, body.reason)
    return JSONResponse(result.allocation, status_code=201 if result.changed else 200)


@router.get(
    "/allocations",
    response_model=AllocationsOut,
    summary="List allocations, newest first",
    responses=problems(NO_NODE, 422),
)
def get_allocations(
    actor: Viewer,
    db: Db,
    node: str | None = None,
    tenant: str | None = None,
    active: Annotated[bool, Query(description="Only allocations in force now.")] = False,
) -> ValueJSONResponse:
    return ValueJSONResponse({"items": list_allocations(db, actor, node, tenant, active)})


def _end(allocation_id: int, actor: Actor, db: Database, reason: str | None) -> ValueJSONResponse:
    result = end_allocation(db, allocation_id, actor, reason)
    return ValueJSONResponse({**result.allocation, "changed": result.changed})


@router.post(
    "/allocations/{allocation_id}/end",
    response_model=AllocationEndOut,
    summary="End an allocation now (cancel it if it has not started); ending twice changes nothing",
    responses=problems(NO_ALLOCATION, 413, 422),
)
def post_end(allocation_id: int, actor: Operator, db: Db, body: AllocationEndIn | None = None) -> ValueJSONResponse:
    return _end(allocation_id, actor, db, body.reason if body else None)


@router.delete(
    "/allocations/{allocation_id}",
    response_model=AllocationEndOut,
    summary="Same as POST /allocations/{id}/end",
    responses=problems(NO_ALLOCATION, 422),
)
def delete_allocation(allocation_id: int, actor: Operator, db: Db) -> ValueJSONResponse:
    return _end(allocation_id, actor, db, None)
