"""API tokens (admin only): the secret is in the creation response and nowhere else, ever."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gpufleet.api.auth import Admin
from gpufleet.api.deps import Db
from gpufleet.api.schemas import PROBLEMS, ItemsOut, TokenIn, problem
from gpufleet.fleet.tokens import create_token, list_tokens, revoke_token

router = APIRouter(tags=["tokens"], responses=PROBLEMS)


@router.post("/tokens", status_code=201, summary="Create a token; the secret is shown only in this response")
def post_token(body: TokenIn, actor: Admin, db: Db) -> dict[str, Any]:
    issued = create_token(db, body.name, body.role, actor, body.tenant)
    return {"id": issued.id, "name": issued.name, "role": issued.role, "tenant": issued.tenant, "secret": issued.secret}


@router.get("/tokens", response_model=ItemsOut, summary="List tokens (never their secrets)")
def get_tokens(actor: Admin, db: Db) -> dict[str, Any]:
    return {"items": list_tokens(db, actor)}


@router.delete(
    "/tokens/{token_id}", summary="Revoke a token; revoking twice changes nothing", responses=problem(404, "No token")
)
def delete_token(token_id: int, actor: Admin, db: Db) -> dict[str, Any]:
    return {"id": token_id, "revoked_at": revoke_token(db, token_id, actor).isoformat()}
