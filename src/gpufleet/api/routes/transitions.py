"""Lifecycle transitions of one node: the only way a node's state changes through the API."""

from __future__ import annotations

from fastapi import APIRouter

from gpufleet.api.auth import Operator
from gpufleet.api.deps import Db, IfMatch, etag
from gpufleet.api.responses import JSONResponse
from gpufleet.api.schemas import AUTH, ETAG, TransitionIn, problems, with_headers
from gpufleet.api.schemas.nodes import TransitionOut
from gpufleet.fleet.lifecycle import transition

router = APIRouter(tags=["nodes"], responses=AUTH)


@router.post(
    "/nodes/{node}/transitions",
    response_model=TransitionOut,
    summary="Apply a lifecycle event to a node",
    responses={
        **with_headers(200, ETAG),
        **problems(
            400,
            (404, "No such node"),
            (409, "The event is not allowed from the node's state; `allowed_events` lists those that are"),
            (412, "If-Match names a version the node has moved past"),
            413,
            422,
        ),
    },
)
def post_transition(node: str, body: TransitionIn, actor: Operator, db: Db, version: IfMatch) -> JSONResponse:
    result = transition(db, node, body.event, body.reason, actor, version, body.force)
    return JSONResponse(
        {
            "id": result.node_id,
            "event": result.event,
            "from_state": result.from_state,
            "state": result.to_state,
            "version": result.version,
            "at": result.at.isoformat(),
            "event_id": result.event_id,
        },
        headers={"ETag": etag(result.version)},
    )
