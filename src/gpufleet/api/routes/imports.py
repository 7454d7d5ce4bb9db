"""Inventory import over HTTP: the raw supplier file as the request body, the same report as the CLI."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from gpufleet.api.auth import Operator
from gpufleet.api.deps import Db
from gpufleet.api.problems import Problem, report_response
from gpufleet.api.responses import JSONResponse
from gpufleet.api.schemas import AUTH, problems
from gpufleet.api.schemas.fleet import ImportReportOut
from gpufleet.fleet.inventory import import_nodes

router = APIRouter(tags=["imports"], responses=AUTH)

_BY_CONTENT_TYPE = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/json": "json",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
}


def _format(given: str | None, request: Request) -> str | None:
    """The format named by the query, else by the Content-Type, else left to the service to read off ``source``."""
    if given:
        return given
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return _BY_CONTENT_TYPE.get(content_type)


@router.post(
    "/imports/nodes",
    response_model=ImportReportOut,
    summary="Import a supplier's node inventory (CSV, JSON array or JSONL), up to 64 MiB",
    responses=problems(
        (413, "The file is larger than 64 MiB"),
        (422, "Rows are invalid (`report` holds the report, `errors` each row's problem), or the file is unreadable"),
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def post_import(
    request: Request,
    actor: Operator,
    db: Db,
    format: Annotated[Literal["csv", "json", "jsonl"] | None, Query(description="Default: from Content-Type.")] = None,
    partial: Annotated[bool, Query(description="Apply the good rows and report the bad ones.")] = False,
    dry_run: Annotated[bool, Query(description="Report what would change and write nothing.")] = False,
    source: Annotated[str, Query(min_length=1, max_length=255, description="File name, shown in the report.")] = (
        "upload"
    ),
) -> JSONResponse:
    """All-or-nothing unless ``partial``: 200 when every row was applied (or would be, on a dry run); 422 with the
    report and per-row ``errors`` (line, field, message) otherwise."""
    body = await request.body()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Problem(422, f"the file is not UTF-8 text (byte {exc.start})", "invalid-input", field="body") from None
    fmt = _format(format, request)
    if fmt is None and "." not in source:
        raise Problem(
            422,
            "say what the file is: ?format=csv|json|jsonl, a Content-Type, or a source name with an extension",
            "invalid-input",
            field="format",
        )
    report = await run_in_threadpool(import_nodes, db, text, source, actor, fmt, partial, dry_run)
    return report_response(request, report, "import-rows-invalid", "Some rows are invalid")
