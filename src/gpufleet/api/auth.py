"""Who is calling: bearer tokens resolved to an Actor, and the role each route demands.

Every route declares its caller through one of the ``*Actor`` annotations below, so a route without a role check
does not type-check into existence. Services check roles again; this layer answers early with 401/403 and keeps
the OpenAPI document honest about what each endpoint needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from gpufleet.api.deps import get_db
from gpufleet.api.middleware import CORRELATION_KEY
from gpufleet.api.problems import Problem
from gpufleet.fleet.tokens import authenticate
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="gpufleet token",
    description="An API token made with `gpufleet tokens create --role viewer|operator|admin [--tenant T]`.",
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gpufleet"'}


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    db: Annotated[Database, Depends(get_db)],
) -> Actor:
    if credentials is None or not credentials.credentials:
        raise Problem(401, "send an API token as 'Authorization: Bearer <token>'", "unauthorized", _CHALLENGE)
    actor = await run_in_threadpool(authenticate, db, credentials.credentials, request.scope.get(CORRELATION_KEY))
    if actor is None:
        raise Problem(401, "the API token is unknown or revoked", "unauthorized", _CHALLENGE)
    return actor


def require(role: Role, tenant_scoped_ok: bool = False) -> Callable[[Actor], Awaitable[Actor]]:
    """A dependency that admits callers with at least ``role``; tenant-scoped tokens only where ``tenant_scoped_ok``."""

    async def check(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
        if actor.role < role:
            raise Problem(403, f"this needs the {role.label} role; your token has {actor.role.label}", "forbidden")
        if actor.tenant_scoped and not tenant_scoped_ok:
            raise Problem(403, "a token scoped to a tenant may only read that tenant's nodes", "forbidden")
        return actor

    return check


TenantViewer = Annotated[Actor, Depends(require(Role.VIEWER, tenant_scoped_ok=True))]
"""Reads of nodes and the summary: tenant-scoped tokens allowed, the services narrow what they see."""
Viewer = Annotated[Actor, Depends(require(Role.VIEWER))]
Operator = Annotated[Actor, Depends(require(Role.OPERATOR))]
Admin = Annotated[Actor, Depends(require(Role.ADMIN))]
