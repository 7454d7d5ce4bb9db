"""Validation gating over HTTP: cluster policies, results history, bans, re-ban rates and the threshold simulator."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gpufleet.api.auth import Operator, Viewer
from gpufleet.api.deps import Db, IfMatch, etag
from gpufleet.api.problems import Problem, report_response
from gpufleet.api.responses import JSONResponse, ValueJSONResponse
from gpufleet.api.schemas import AUTH, ETAG, answer, problems, with_headers
from gpufleet.api.schemas.validation import (
    BanOut,
    BansOut,
    PlanOut,
    RebanOut,
    ResultsReportOut,
    SuitesOut,
    ThresholdOut,
    ValidationPolicyOut,
)
from gpufleet.domain.validation import CHECKS, SUITES
from gpufleet.validation.analytics import DEFAULT_DAYS, Scope, reban_report, threshold_report
from gpufleet.validation.bans import ban_node, list_bans
from gpufleet.validation.chart import threshold_chart_html
from gpufleet.validation.ingest import ingest_results
from gpufleet.validation.policy import load_criteria, plan_validation, set_policy, show_policy

router = APIRouter(prefix="/validation", tags=["validation"], responses=AUTH)
NO_CLUSTER = (404, "No such cluster")
NO_NODE = (404, "No such node")
NO_SCOPE = (404, "No cluster, supplier or SKU of that name")

RESULTS_PATH = "/validation/results"
"""Takes whole result files as its body, so the app gives it the upload body limit."""


class PolicyPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    fast_track_days: int | None = Field(default=None, ge=0, le=365)
    fast_track_suite: str | None = None
    fast_track_passes: int | None = Field(default=None, ge=1, le=100)
    slow_path_suite: str | None = None
    slow_path_passes: int | None = Field(default=None, ge=1, le=100)
    canary_suite: str | None = None
    config_version: str | None = Field(
        default=None, max_length=100, description="A new value sends a canary first; null forgets it."
    )


class BanIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    node: str = Field(min_length=1, max_length=255, description="Chassis id, serial or hostname.")
    reason: str = Field(min_length=1, max_length=2000, description="The fault seen in service.")
    source: str = Field(default="operator", min_length=1, max_length=100, description="Who found it.")
    at: AwareDatetime | None = Field(default=None, description="Backfill a past ban (no quarantine); default: now.")


def _scope(
    cluster: Annotated[str | None, Query(max_length=100, description="Only this cluster.")] = None,
    supplier: Annotated[str | None, Query(max_length=100, description="Only this supplier's nodes.")] = None,
    sku: Annotated[str | None, Query(max_length=100, description="Only this SKU.")] = None,
) -> Scope:
    return Scope(cluster, supplier, sku)


ScopeQuery = Annotated[Scope, Depends(_scope)]
Days = Annotated[int, Query(ge=1, le=3650, description="A re-ban is a ban within this many days of an admission.")]


@router.get(
    "/policies/{cluster}",
    response_model=ValidationPolicyOut,
    summary="A cluster's validation policy (the defaults when never set)",
    responses={**with_headers(200, ETAG), **problems(NO_CLUSTER, 422)},
)
def get_policy(cluster: str, actor: Viewer, db: Db) -> JSONResponse:
    view = show_policy(db, cluster, actor)
    return JSONResponse(view.as_dict(), headers={"ETag": etag(view.version)})


@router.patch(
    "/policies/{cluster}",
    response_model=ValidationPolicyOut,
    summary="Change some fields of a cluster's validation policy",
    responses={
        **with_headers(200, ETAG),
        **problems(400, NO_CLUSTER, (412, "If-Match names a version the policy moved past"), 413, 422),
    },
)
def patch_policy(cluster: str, body: PolicyPatchIn, actor: Operator, db: Db, version: IfMatch) -> JSONResponse:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    view = set_policy(db, cluster, changes, actor, version)
    return JSONResponse(view.as_dict(), headers={"ETag": etag(view.version)})


@router.get(
    "/plan/{node}",
    response_model=PlanOut,
    summary="The path, suite and passes a node should run now, and why",
    responses=problems(NO_NODE, 422),
)
def get_plan(node: str, actor: Viewer, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(plan_validation(db, node, actor).as_dict())


@router.get(
    "/suites",
    response_model=SuitesOut,
    summary="Suites, their checks, and the per-GPU-model floors for measured checks",
)
def get_suites(actor: Viewer) -> ValueJSONResponse:
    return ValueJSONResponse(_suites())


def _suites() -> dict[str, Any]:
    return {
        "suites": {s.name: {"checks": list(s.checks), "minutes": s.minutes, "doc": s.doc} for s in SUITES.values()},
        "checks": {c.name: {"kind": c.kind.value, "unit": c.unit, "doc": c.doc} for c in CHECKS.values()},
        "criteria": {c.gpu_model: {"source": c.source, **c.minimums} for c in load_criteria().values()},
    }


@router.post(
    "/results",
    response_model=ResultsReportOut,
    summary="Record validation results: JSONL (one pass a line) or a JSON array, up to 64 MiB",
    responses=problems(
        (413, "The body is larger than 64 MiB"),
        (422, "Records are invalid (`report` holds the report, `errors` each line's problem), or the body is not text"),
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        }
    },
)
async def post_results(
    request: Request,
    actor: Operator,
    db: Db,
    partial: Annotated[bool, Query(description="Record the good lines and report the bad ones.")] = False,
    dry_run: Annotated[bool, Query(description="Check and count; record nothing.")] = False,
    source: Annotated[str, Query(min_length=1, max_length=255, description="Shown in reports.")] = "api",
) -> JSONResponse:
    """All or nothing unless ``partial``. Lines already recorded are skipped, so re-sending is safe. 200 when every
    line was recorded (or already was); 422 with per-line ``errors`` (line, field, message) otherwise."""
    body = await request.body()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Problem(422, f"the body is not UTF-8 text (byte {exc.start})", "invalid-input", field="body") from None
    report = await run_in_threadpool(ingest_results, db, text, source, actor, None, partial, dry_run)
    return report_response(request, report, "results-invalid", "Some records are invalid")


@router.post(
    "/bans",
    status_code=201,
    response_model=BanOut,
    summary="Ban a node from its cluster for failing in service",
    responses={
        **answer(200, BanOut, "The node was already banned since its last admission: that ban"),
        **problems(NO_NODE, 413, 422),
    },
)
def post_ban(body: BanIn, actor: Operator, db: Db) -> JSONResponse:
    """A node in service is quarantined too. Banning a node already banned since its last admission returns that
    ban with 200."""
    result = ban_node(db, body.node, body.reason, actor, body.source, body.at)
    return JSONResponse(result.as_dict(), status_code=201 if result.created else 200)


@router.get("/bans", response_model=BansOut, summary="The latest bans, newest first", responses=problems(NO_NODE, 422))
def get_bans(
    actor: Viewer,
    db: Db,
    node: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> ValueJSONResponse:
    return ValueJSONResponse({"items": list_bans(db, actor, node, limit)})


@router.get(
    "/reban-rates",
    response_model=RebanOut,
    summary="Re-ban rates by supplier, SKU, cluster or month of admission",
    responses=problems(NO_SCOPE, 422),
)
def get_reban_rates(
    actor: Viewer,
    db: Db,
    scope: ScopeQuery,
    by: Annotated[Literal["supplier", "sku", "cluster", "month"], Query(description="Group admissions by this.")] = (
        "supplier"
    ),
    days: Days = DEFAULT_DAYS,
) -> ValueJSONResponse:
    """An admission is a passing attempt; a re-ban is a ban in the same cluster within ``days`` after it."""
    return ValueJSONResponse(reban_report(db, actor, by, days, scope).as_dict())


@router.get(
    "/threshold",
    response_model=ThresholdOut,
    summary="The threshold simulator: each k = 1..N of the slow path's passes",
    responses=problems(NO_SCOPE, 422),
)
def get_threshold(actor: Viewer, db: Db, scope: ScopeQuery, days: Days = DEFAULT_DAYS) -> ValueJSONResponse:
    """``rows`` holds one object per k: admitted, extra_admitted, extra_share, reban_rate_at_n,
    expected_bad_admitted, gpu_hours_saved, value_of_pass and more."""
    return ValueJSONResponse(threshold_report(db, actor, scope, days).as_dict())


@router.get(
    "/threshold.html",
    summary="The threshold simulator as a self-contained chart",
    response_class=HTMLResponse,
    responses=problems(NO_SCOPE, 422),
)
def get_threshold_chart(actor: Viewer, db: Db, scope: ScopeQuery, days: Days = DEFAULT_DAYS) -> HTMLResponse:
    return HTMLResponse(threshold_chart_html(threshold_report(db, actor, scope, days)))
