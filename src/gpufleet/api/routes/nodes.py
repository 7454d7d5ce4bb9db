"""Nodes: filtered pages, detail with timeline, and label/attribute edits guarded by ETag.

The page and the detail are the hot reads: they answer with orjson's bytes directly, and their declared models only
describe them (FastAPI validates nothing it is handed as a response object).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gpufleet.api.auth import Operator, TenantViewer
from gpufleet.api.deps import Db, IfMatch, etag
from gpufleet.api.responses import JSONResponse
from gpufleet.api.schemas import AUTH, ETAG, NodePatchIn, problems, with_headers
from gpufleet.api.schemas.nodes import NodeOut, NodePageOut, NodeUpdateOut
from gpufleet.fleet.queries import (
    DEFAULT_PAGE,
    FIELDS,
    MAX_PAGE,
    SORTABLE,
    NodeFilter,
    list_nodes,
    node_detail,
    parse_fields,
)
from gpufleet.fleet.updates import update_node

router = APIRouter(tags=["nodes"], responses=AUTH)
NO_NODE = (404, "No node with that chassis id, serial or hostname (or not one the token's tenant holds)")


@router.get("/nodes", response_model=NodePageOut, summary="List nodes", responses=problems(422))
def get_nodes(
    actor: TenantViewer,
    db: Db,
    state: Annotated[str | None, Query(description="Comma-separated states, e.g. `in_service,quarantined`.")] = None,
    cluster: str | None = None,
    supplier: str | None = None,
    sku: str | None = None,
    rack: str | None = None,
    nvlink_domain: str | None = None,
    selector: Annotated[
        str | None, Query(description="Label selector: `k=v`, `k!=v`, `k` (has), `!k` (has not), comma = and.")
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` from the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    sort: Annotated[
        str, Query(description=f"One of {', '.join(SORTABLE)}; prefix `-` for descending.", max_length=40)
    ] = "id",
    fields: Annotated[str | None, Query(description=f"Comma-separated subset of {', '.join(FIELDS)}.")] = None,
) -> JSONResponse:
    flt = NodeFilter.build(state, cluster, supplier, sku, rack, nvlink_domain, selector)
    wanted = parse_fields(fields)
    with db.reader() as session:
        page = list_nodes(session, actor, db.clock.now(), flt, limit, cursor, sort, wanted)
    return JSONResponse({"items": page.items, "next_cursor": page.next_cursor})


@router.get(
    "/nodes/{node}",
    response_model=NodeOut,
    summary="One node with its GPUs, allocations, lifecycle obligations and event timeline",
    responses={**with_headers(200, ETAG), **problems(NO_NODE, 422)},
)
def get_node(node: str, actor: TenantViewer, db: Db) -> JSONResponse:
    with db.reader() as session:
        detail = node_detail(session, node, actor, db.clock.now())
    return JSONResponse(detail, headers={"ETag": etag(detail["version"])})


@router.patch(
    "/nodes/{node}",
    response_model=NodeUpdateOut,
    summary="Change a node's labels and attributes (merge patch)",
    responses={
        **with_headers(200, ETAG),
        **problems(400, NO_NODE, (412, "If-Match names a version the node has moved past"), 413, 422),
    },
)
def patch_node(node: str, body: NodePatchIn, actor: Operator, db: Db, version: IfMatch) -> JSONResponse:
    result = update_node(db, node, actor, body.reason, body.labels, body.attributes, version)
    return JSONResponse(result.as_dict(), headers={"ETag": etag(result.version)})
