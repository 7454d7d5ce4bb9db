"""Every error leaves the API as ``application/problem+json`` (RFC 9457), whatever raised it.

Clients and the console get one shape to parse: ``type``, ``title``, ``status``, ``detail``, ``instance``, plus
extension members where they help a caller fix the request (``field``, ``errors``, ``allowed_events``).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpufleet.api.responses import JSONResponse
from gpufleet.platform.errors import InvalidInput, InvalidTransition, ServiceError, VersionConflict

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:gpufleet:problem:"
log = logging.getLogger("gpufleet.api")


class Problem(Exception):
    """An error the API itself decides (authentication, preconditions, body size), with its status and extras."""

    def __init__(
        self,
        status: int,
        detail: str,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.headers = headers or {}
        self.extensions = extensions


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-")
    except ValueError:
        return "error"


def problem_response(
    request: Request,
    status: int,
    detail: str,
    slug: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + (slug or _slug(status)),
        "title": title or phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    correlation_id = request.scope.get("gpufleet.correlation_id")
    if correlation_id:
        body["correlation_id"] = correlation_id
    body.update({k: v for k, v in extensions.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc[1:]] if len(loc) > 1 and loc[0] in ("body", "query", "path", "header") else []
    if not parts:
        return str(loc[0]) if loc else "body"
    return ".".join(parts)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(request, exc.status, exc.detail, exc.slug, headers=exc.headers, **exc.extensions)


async def _on_service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    extensions: dict[str, Any] = {}
    if isinstance(exc, InvalidInput):
        extensions = {"field": exc.field, "line": exc.line}
    elif isinstance(exc, VersionConflict):
        extensions = {"node": exc.node_id, "expected_version": exc.expected, "current_version": exc.actual}
    slug = type(exc).__name__
    slug = "".join("-" + c.lower() if c.isupper() else c for c in slug).lstrip("-")
    return problem_response(request, exc.status, str(exc), slug, title=exc.title, **extensions)


async def _on_invalid_transition(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidTransition)
    return problem_response(
        request,
        409,
        str(exc),
        "invalid-transition",
        title="Invalid transition",
        state=str(exc.state),
        event=exc.event,
        allowed_events=exc.allowed,
        refused_by_guard=exc.why,
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for e in exc.errors():
        loc = tuple(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            reason = (e.get("ctx") or {}).get("error", "invalid JSON")
            message = f"malformed JSON at character {loc[-1]}: {reason}"
            errors.append({"field": "body", "in": "body", "message": message})
        else:
            errors.append({"field": _field_of(loc), "in": loc[0] if loc else "body", "message": e.get("msg")})
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return problem_response(
        request,
        422,
        f"field '{first['field']}': {first['message']}{more}",
        "invalid-input",
        title="Invalid input",
        field=first["field"],
        errors=errors,
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}; see /docs for the API"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(request, exc.status_code, detail, headers=dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, 500, "an internal error occurred; the correlation id identifies it in the logs")


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(InvalidTransition, _on_invalid_transition)
    app.add_exception_handler(ServiceError, _on_service_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


class _Report(Protocol):
    @property
    def ok(self) -> bool: ...

    def summary_line(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


def report_response(request: Request, report: _Report, slug: str, title: str) -> JSONResponse:
    """A bulk upload's report: 200 when everything was applied, else 422 problem+json with the per-row errors."""
    result = report.as_dict()
    if report.ok:
        return JSONResponse(result)
    return problem_response(
        request, 422, report.summary_line(), slug, title=title, errors=result["errors"], report=result
    )
