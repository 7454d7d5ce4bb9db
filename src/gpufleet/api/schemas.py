"""Request bodies and the documented shapes of responses, as they appear in the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


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


class ProblemOut(BaseModel):
    """An RFC 9457 problem document; extension members vary by problem."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    instance: str
    correlation_id: str | None = None


class NodePageOut(BaseModel):
    items: list[dict[str, Any]] = Field(description="Nodes, trimmed to `fields` when given.")
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page; null on the last page.")


class ItemsOut(BaseModel):
    items: list[dict[str, Any]]


class TransitionOut(BaseModel):
    id: str
    event: str
    from_state: str
    state: str
    version: int
    at: str
    event_id: int


PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemOut, "content": {"application/problem+json": {}}, "description": text}
    for status, text in (
        (401, "No token, or an unknown or revoked one"),
        (403, "The token's role or tenant scope does not allow this"),
        (422, "Invalid input; `field` names what was wrong"),
    )
}
"""Error responses every authenticated route may give, for the OpenAPI document."""


def problem(status: int, text: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ProblemOut, "content": {"application/problem+json": {}}, "description": text}}
