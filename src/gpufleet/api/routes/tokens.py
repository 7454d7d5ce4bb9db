"""API tokens (admin only): the secret is in the creation response and nowhere else, ever."""

from __future__ import annotations

from fastapi import APIRouter

from gpufleet.api.auth import Admin
from gpufleet.api.deps import Db
from gpufleet.api.responses import ValueJSONResponse
from gpufleet.api.schemas import AUTH, TokenIn, problems
from gpufleet.api.schemas.fleet import TokenIssuedOut, TokenRevokedOut, TokensOut
from gpufleet.fleet.tokens import create_token, list_tokens, revoke_token

router = APIRouter(tags=["tokens"], responses=AUTH)


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenIssuedOut,
    summary="Create a token; the secret is shown only in this response",
    responses=problems(413, 422),
)
def post_token(body: TokenIn, actor: Admin, db: Db) -> ValueJSONResponse:
    issued = create_token(db, body.name, body.role, actor, body.tenant)
    return ValueJSONResponse(
        {"id": issued.id, "name": issued.name, "role": issued.role, "tenant": issued.tenant, "secret": issued.secret},
        status_code=201,
    )


@router.get("/tokens", response_model=TokensOut, summary="List tokens (never their secrets)")
def get_tokens(actor: Admin, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse({"items": list_tokens(db, actor)})


@router.delete(
    "/tokens/{token_id}",
    response_model=TokenRevokedOut,
    summary="Revoke a token; revoking twice changes nothing",
    responses=problems((404, "No token"), 422),
)
def delete_token(token_id: int, actor: Admin, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse({"id": token_id, "revoked_at": revoke_token(db, token_id, actor).isoformat()})
