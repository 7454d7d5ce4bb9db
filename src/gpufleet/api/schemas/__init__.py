"""Request bodies, the problem document, and what each route may answer, as they appear in the OpenAPI document.

The response shapes live in one module per area (``nodes``, ``fleet``, ``health``, ``validation``, ``cases``,
``remediation``, ``clusters``). They describe what the routes write; the routes write it themselves (a response object),
so FastAPI never validates or re-serialises a payload through these models while answering. The tests compare real
answers with them (tests/integration/test_api_openapi.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Responses = dict[int | str, dict[str, Any]]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Out(BaseModel):
    """A response shape: exactly these members (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------------------------
# Request bodies shared by several routes.


class TransitionIn(_In):
    event: str = Field(min_length=1, max_length=40, description="A lifecycle event; see GET /api/v1/lifecycle.")
    reason: str = Field(min_length=1, max_length=2000, description="Why: recorded in the node's event timeline.")
    force: bool = Field(default=False, description="Override guards (e.g. an active allocation); recorded as forced.")


class NodePatchIn(_In):
    labels: dict[str, str | None] | None = Field(
        default=None, description="Merge patch: a value sets the label, null removes it, others stay."
    )
    attributes: dict[str, Any] | None = Field(
        default=None, description="Merge patch of custom attributes: null removes a key."
    )
    reason: str = Field(min_length=1, max_length=2000)


class AllocationIn(_In):
    node: str = Field(min_length=1, max_length=255, description="Chassis id, serial or hostname.")
    tenant: str = Field(min_length=1, max_length=100)
    project: str | None = Field(default=None, max_length=100)
    starts_at: AwareDatetime | None = Field(default=None, description="Default: now.")
    ends_at: AwareDatetime | None = Field(default=None, description="Default: open-ended.")
    reason: str | None = Field(default=None, max_length=2000)


class AllocationEndIn(_In):
    reason: str | None = Field(default=None, max_length=2000)


class TokenIn(_In):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["viewer", "operator", "admin"]
    tenant: str | None = Field(default=None, description="Scope the token to this tenant's nodes.")


# ---------------------------------------------------------------------------------------------------------------
# Errors: every one is a problem document (application/problem+json, RFC 9457).


class ProblemOut(BaseModel):
    """An RFC 9457 problem document. The extension members below appear where they help a caller fix the request;
    others may be added."""

    model_config = ConfigDict(extra="allow", title="Problem")
    type: str = Field(description="`urn:gpufleet:problem:<slug>`, e.g. `urn:gpufleet:problem:invalid-transition`.")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The request path.")
    correlation_id: str | None = Field(default=None, description="The request's X-Correlation-ID.")
    field: str | None = Field(default=None, description="Invalid input: the field (or `body`) that was wrong.")
    line: int | None = Field(default=None, description="Invalid input from a file: the line.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Every problem found: field, in and message; or line, field and message for files."
    )
    report: dict[str, Any] | None = Field(
        default=None, description="A bulk upload refused in part or whole: its report, as the 200 answer would be."
    )
    allowed_events: list[str] | None = Field(default=None, description="Invalid transition: the events allowed now.")
    state: str | None = Field(default=None, description="Invalid transition: the node's state.")
    event: str | None = Field(default=None, description="Invalid transition: the event refused.")
    refused_by_guard: str | None = Field(default=None, description="Invalid transition: the guard that refused it.")
    node: str | None = Field(default=None, description="Version conflict: the node.")
    expected_version: int | None = Field(default=None, description="Version conflict: the version If-Match named.")
    current_version: int | None = Field(default=None, description="Version conflict: the node's version now.")


_PROBLEM_TEXTS: dict[int, str] = {
    400: "A malformed header, such as an If-Match that is not one ETag",
    401: "No token, or an unknown or revoked one",
    403: "The token's role or tenant scope does not allow this",
    404: "Something the request names does not exist (or is not visible to the token's tenant)",
    409: "The request conflicts with the current state",
    412: "If-Match names a version that has moved on: read again and retry",
    413: "The request body is larger than this endpoint accepts (1 MiB for JSON bodies)",
    422: "Invalid input; `field` names what was wrong and `errors` lists every problem",
    502: "The cluster's scheduler refused or did not answer",
    503: "The server has as much of this work in hand as it takes: send the same request again later",
}


def problem(status: int, text: str | None = None) -> Responses:
    """One error answer for a route's ``responses``: a problem document with ``status``."""
    return {
        status: {
            "model": ProblemOut,
            "content": {"application/problem+json": {}},
            "description": text or _PROBLEM_TEXTS[status],
        }
    }


def problems(*answers: int | tuple[int, str]) -> Responses:
    """Several error answers: a status alone takes the usual text, ``(status, text)`` says what it means here."""
    out: Responses = {}
    for answer in answers:
        status, text = answer if isinstance(answer, tuple) else (answer, None)
        out.update(problem(status, text))
    return out


AUTH = problems(401, 403)
"""What every route with a token may answer: its routers declare these."""

ETAG = {
    "ETag": {
        "description": 'The version as an entity tag (`"3"`): send it back as If-Match to change it safely.',
        "schema": {"type": "string"},
    }
}
"""The response header of a versioned resource."""


def answer(status: int, model: type[Any], text: str, headers: dict[str, Any] | None = None) -> Responses:
    """A second success answer (e.g. 200 beside a route's 201) with its own shape."""
    return {status: {"model": model, "description": text, **({"headers": headers} if headers else {})}}


def with_headers(status: int, headers: dict[str, Any]) -> Responses:
    """Response headers for a route's main answer."""
    return {status: {"headers": headers}}
