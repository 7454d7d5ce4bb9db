"""The REST API application: ``create_app`` wires routes, auth, error format and limits onto one Database.

Run it with ``uvicorn --factory gpufleet.api.app:create_app`` (what ``gpufleet serve`` does); without an explicit
database it opens the one named by ``GPUFLEET_DATABASE_URL``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gpufleet import __version__
from gpufleet.api import problems
from gpufleet.api.middleware import (
    JSON_BODY_LIMIT,
    UPLOAD_BODY_LIMIT,
    BodyLimitMiddleware,
    CorrelationIdMiddleware,
)
from gpufleet.api.responses import JSONResponse
from gpufleet.api.routes import (
    allocations,
    cases,
    clusters,
    events,
    health,
    imports,
    lifecycle,
    metrics,
    nodes,
    reference,
    remediation,
    summary,
    tokens,
    transitions,
    validation,
)
from gpufleet.api.runtime import settle_process
from gpufleet.platform.database import Database, open_database
from gpufleet.remediation.react import attach as attach_reaction

API_PREFIX = "/api/v1"
UPLOAD_PATHS = frozenset({f"{API_PREFIX}/imports/nodes", f"{API_PREFIX}{validation.RESULTS_PATH}"}) | (
    events.upload_paths(API_PREFIX)
)

DESCRIPTION = """
The source of truth for a GPU fleet and the lifecycle every node moves through.

**Auth**: send `Authorization: Bearer <token>`. Reads need the *viewer* role, changes *operator*, token management
*admin*. A token scoped to a tenant sees only the nodes allocated to that tenant (node list, node detail, summary)
and is refused everything else with 403.

**Errors** are `application/problem+json` (RFC 9457) with extension members such as `field`, `errors` and
`allowed_events`.

**Concurrency**: node responses carry `ETag: "<version>"`; send it back as `If-Match` on a change to get 412 instead
of overwriting someone else's.

**Tracing**: an `X-Correlation-ID` request header is recorded on every event the request writes and echoed back.

`/healthz` and `/metrics` (Prometheus) need no token.
"""


def _body_limit(path: str) -> int:
    return UPLOAD_BODY_LIMIT if path in UPLOAD_PATHS else JSON_BODY_LIMIT


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with each problem's schema under application/problem+json, the type it is sent as.

    FastAPI files a response's ``model`` under the route's own media type (application/json, text/html); the error
    answers declared with ``schemas.problem`` name both, so the schema moves to the one the server really writes.
    """
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = FastAPI.openapi(app)  # builds the document and keeps it as app.openapi_schema
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for answer in operation.get("responses", {}).values():
                content = answer.get("content", {})
                if problems.PROBLEM_JSON not in content:
                    continue
                for media in [m for m in content if m != problems.PROBLEM_JSON and "schema" in content[m]]:
                    content[problems.PROBLEM_JSON]["schema"] = content.pop(media)["schema"]
    return document


def create_app(db: Database | None = None) -> FastAPI:
    owned = db is None
    database = db if db is not None else open_database()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if owned:  # the server process itself, not an app a caller (a test) embeds
            settle_process()
        yield
        if owned:
            database.dispose()

    app = FastAPI(
        title="gpufleet",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        default_response_class=JSONResponse,
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    # The composition root of the API: ingest -> reaction is wired here, for this database, and nowhere else.
    attach_reaction(database)
    app.state.db = database
    app.state.metrics_registry = metrics.registry_for(database)
    problems.install(app)
    # Added innermost first: the correlation id must exist before a 413 is written.
    app.add_middleware(BodyLimitMiddleware, limit_for=_body_limit)
    app.add_middleware(CorrelationIdMiddleware)
    for module in (nodes, transitions, summary, lifecycle, reference, imports, allocations, tokens, validation, events):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(clusters.router, prefix=API_PREFIX)
    app.include_router(cases.router, prefix=API_PREFIX)
    app.include_router(remediation.router, prefix=API_PREFIX)
    for module in (health, metrics):
        app.include_router(module.router)
        app.include_router(module.router, prefix=API_PREFIX, include_in_schema=False)
    return app
