"""Liveness and readiness for load balancers and orchestrators: no token needed, no fleet data revealed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from gpufleet.api.deps import Db
from gpufleet.api.responses import JSONResponse
from gpufleet.api.schemas import answer
from gpufleet.api.schemas.health import HealthzOut
from gpufleet.platform.database import Database

router = APIRouter(tags=["operations"])


def _check(db: Database) -> dict[str, Any]:
    try:
        revision = db.revision()
    except Exception as exc:
        return {"status": "unavailable", "database": "unreachable", "error": type(exc).__name__}
    head = db.head_revision()
    current = revision == head
    return {
        "status": "ok" if current else "unavailable",
        "database": "reachable",
        "schema": "current" if current else "outdated",
        "revision": revision,
        "expected_revision": head,
    }


@router.get(
    "/healthz",
    response_model=HealthzOut,
    summary="Is the database reachable and its schema current? 200 if so, else 503",
    responses=answer(503, HealthzOut, "The database is unreachable or its schema is not the one this server expects"),
)
async def healthz(db: Db) -> JSONResponse:
    report = await run_in_threadpool(_check, db)
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)
