"""Health telemetry over HTTP: one endpoint per format, the event list, and re-matching the unmatched events.

Alertmanager posts its webhook straight to ``POST /api/v1/events/alertmanager`` with an operator token::

    receivers:
      - name: gpufleet
        webhook_configs:
          - url: https://gpufleet.example/api/v1/events/alertmanager
            send_resolved: true
            http_config:
              authorization:
                type: Bearer
                credentials_file: /etc/alertmanager/gpufleet.token

The token file holds one line, a token made with ``gpufleet tokens create --role operator``.

Alertmanager re-sends firing alerts every ``repeat_interval``; those are counted as duplicates and change nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gpufleet.api.auth import Operator, Viewer
from gpufleet.api.deps import Db
from gpufleet.api.problems import problem_response
from gpufleet.api.responses import JSONResponse, ValueJSONResponse
from gpufleet.api.schemas import AUTH, answer, problems
from gpufleet.api.schemas.health import (
    AgentRequestOut,
    AgentRequestsOut,
    ClaimOut,
    EventPageOut,
    HealthIngestReportOut,
    RematchOut,
)
from gpufleet.health.events import EventFilter, list_events, rematch
from gpufleet.health.ingest import FORMATS, ingest
from gpufleet.health.requests import claim_requests, get_request, list_requests, request_diagnostic

router = APIRouter(tags=["health events"], responses=AUTH)
NO_NODE = (404, "No such node")

Format = Literal["xid", "nvidia-smi", "dcgm", "alertmanager", "json"]
_CONTENT: dict[str, dict[str, Any]] = {
    "xid": {"text/plain": {"schema": {"type": "string"}, "example": "NVRM: Xid (PCI:0000:3b:00): 79, ..."}},
    "nvidia-smi": {"application/xml": {"schema": {"type": "string"}}},
    "dcgm": {"application/json": {"schema": {"type": "object"}}},
    "alertmanager": {"application/json": {"schema": {"type": "object"}}},
    "json": {
        "application/json": {"schema": {"type": "object"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}


def upload_paths(prefix: str) -> frozenset[str]:
    """The ingest endpoints take whole log files, so the app gives them the upload body limit."""
    return frozenset(f"{prefix}/events/{fmt}" for fmt in FORMATS)


@router.post(
    "/events/rematch",
    response_model=RematchOut,
    summary="Match the unmatched events again against today's inventory",
)
def post_rematch(actor: Operator, db: Db) -> ValueJSONResponse:
    """Events that now match a node and GPU go to remediation, unless they are older than 30 days."""
    return ValueJSONResponse(rematch(db, actor).as_dict())


@router.post(
    "/events/{fmt}",
    response_model=HealthIngestReportOut,
    summary="Record health telemetry in one format: xid, nvidia-smi, dcgm, alertmanager or json (up to 64 MiB)",
    responses=problems(
        (413, "The body is larger than 64 MiB"),
        (422, "Nothing in the body could be read (`report` holds the report), or a parameter is invalid"),
        (503, "Every ingest turn stayed taken for the whole wait: send the same body again later"),
    ),
    openapi_extra={
        "requestBody": {"required": True, "content": {k: v for c in _CONTENT.values() for k, v in c.items()}}
    },
)
async def post_events(
    request: Request,
    fmt: Format,
    actor: Operator,
    db: Db,
    node: Annotated[
        str | None,
        Query(max_length=255, description="The node the body came from (chassis id, serial or hostname)."),
    ] = None,
    source: Annotated[str, Query(min_length=1, max_length=200, description="Shown in reports and kept.")] = "api",
    delivery: Annotated[
        str | None,
        Query(
            min_length=1, max_length=100, description="The sender's id for this body: a retry with it is a duplicate."
        ),
    ] = None,
    request_id: Annotated[
        int | None, Query(alias="request", ge=1, description="The agent request this body answers; it is closed.")
    ] = None,
) -> JSONResponse:
    """Bad lines and documents are reported with their position (``problems``) and the rest is recorded; events
    already recorded count as ``duplicates``; events for unknown nodes or GPUs are stored in the ``unmatched`` list.
    200 with the report whenever anything could be read; 422 when nothing in the body could."""
    body = await request.body()
    text = body.decode("utf-8", errors="replace").lstrip("\ufeff")
    report = await run_in_threadpool(ingest, db, text, fmt, actor, node, source, delivery, request_id)
    result = report.as_dict()
    if report.problems and not report.readings and not report.events:
        return problem_response(
            request,
            422,
            f"nothing in the body could be read as {fmt}: {report.problems[0]}",
            "events-unreadable",
            title="Unreadable health telemetry",
            errors=result["problems"],
            report=result,
        )
    return JSONResponse(result)


@router.get(
    "/events", response_model=EventPageOut, summary="Health events, newest first", responses=problems(NO_NODE, 422)
)
def get_events(
    actor: Viewer,
    db: Db,
    node: Annotated[str | None, Query(max_length=255, description="Chassis id, serial or hostname.")] = None,
    unmatched: Annotated[bool, Query(description="Only events no node or GPU was found for.")] = False,
    source: Annotated[Format | None, Query(description="Only this source.")] = None,
    code: Annotated[str | None, Query(max_length=80, description="Only this code, e.g. xid:79.")] = None,
    severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
    since: Annotated[AwareDatetime | None, Query(description="Only events observed at or after this time.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, description="The `next_before` of the previous page.")] = None,
) -> ValueJSONResponse:
    page = list_events(db, actor, EventFilter(node, unmatched, source, code, severity, since), limit, before)
    return ValueJSONResponse({"items": page.items, "next_before": page.next_before})


# ---------------------------------------------------------------------------------------------------------------
# Work for node agents.


class DiagnosticIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    node: str = Field(min_length=1, max_length=255, description="Chassis id, serial or hostname.")
    level: int = Field(default=2, ge=1, le=4, description="`dcgmi diag -r` level: 1 quick ... 4 extended.")
    reason: str = Field(min_length=1, max_length=2000)


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    node: str = Field(min_length=1, max_length=255, description="The agent's node: chassis id, serial or hostname.")


@router.post(
    "/agent/requests",
    status_code=201,
    response_model=AgentRequestOut,
    summary="Ask a node's agent to run a DCGM diagnostic",
    responses={
        **answer(200, AgentRequestOut, "The node already has a diagnostic asked: that request"),
        **problems(NO_NODE, 413, 422),
    },
)
def post_request(body: DiagnosticIn, actor: Operator, db: Db) -> JSONResponse:
    """201 with the new request; 200 with the open one when the node already has a diagnostic asked."""
    view = request_diagnostic(db, body.node, body.level, actor, body.reason)
    return JSONResponse(view.as_dict(), status_code=201 if view.created else 200)


@router.post(
    "/agent/requests/claim",
    response_model=ClaimOut,
    summary="An agent takes the work waiting for its node",
    responses=problems(NO_NODE, 413, 422),
)
def post_claim(body: ClaimIn, actor: Operator, db: Db) -> ValueJSONResponse:
    """The agent runs each request and posts the result to `/events/dcgm?request=<id>`, which closes it. A request
    taken and never answered is offered again after its lease."""
    return ValueJSONResponse({"requests": [r.as_dict() for r in claim_requests(db, body.node, actor)]})


@router.get(
    "/agent/requests",
    response_model=AgentRequestsOut,
    summary="Agent requests, newest first",
    responses=problems(NO_NODE, 422),
)
def get_requests(
    actor: Viewer,
    db: Db,
    node: Annotated[str | None, Query(max_length=255)] = None,
    status: Annotated[Literal["pending", "running", "done", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ValueJSONResponse:
    return ValueJSONResponse({"items": [r.as_dict() for r in list_requests(db, actor, node, status, limit)]})


@router.get(
    "/agent/requests/{request_id}",
    response_model=AgentRequestOut,
    summary="One agent request and its result",
    responses=problems((404, "No such agent request"), 422),
)
def get_one_request(request_id: int, actor: Viewer, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(get_request(db, request_id, actor).as_dict())
