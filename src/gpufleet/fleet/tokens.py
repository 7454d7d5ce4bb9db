"""API tokens: shown once at creation, stored only as a SHA-256 hash, checked on every request."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpufleet.fleet import store
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound

TOKEN_PREFIX = "gf_"  # noqa: S105 - a public marker, not a secret


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    id: int
    name: str
    role: str
    tenant: str | None
    secret: str


def create_token(db: Database, name: str, role: str, actor: Actor, tenant: str | None = None) -> IssuedToken:
    if actor.role < Role.ADMIN or actor.tenant_scoped:
        raise Forbidden("managing tokens needs the admin role")
    parsed = Role.parse(role)
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("a token name of 1 to 100 characters is required", field="name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = db.clock.now()
    with db.transaction() as session:
        tenant_id = None
        if tenant:
            tenant_id = store.tenant_id_named(session, tenant)
            if tenant_id is None:
                raise InvalidInput(f"unknown tenant '{tenant}'", field="tenant")
        token_id = store.add_token(
            session,
            name=name,
            prefix=secret[:10],
            token_hash=hash_token(secret),
            role=parsed.label,
            tenant_id=tenant_id,
            created_at=now,
            created_by=actor.name,
        )
        return IssuedToken(token_id, name, parsed.label, tenant, secret)


def authenticate(db: Database, secret: str, correlation_id: str | None = None) -> Actor | None:
    """The actor behind a bearer token, or ``None`` for an unknown or revoked one."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    with db.reader() as session:
        row = store.live_token(session, hash_token(secret))
    if row is None:
        return None
    extra: dict[str, Any] = {"correlation_id": correlation_id} if correlation_id else {}
    return Actor(name=f"token:{row.name}#{row.id}", role=Role.parse(row.role), tenant_id=row.tenant_id, **extra)


def list_tokens(db: Database, actor: Actor) -> list[dict[str, Any]]:
    if actor.role < Role.ADMIN or actor.tenant_scoped:
        raise Forbidden("managing tokens needs the admin role")
    with db.reader() as session:
        rows = store.tokens_with_tenants(session)
        # Read the rows while the session is open: leaving the reader rolls back, which expires them.
        return [
            {
                "id": t.id,
                "name": t.name,
                "prefix": t.prefix,
                "role": t.role,
                "tenant": tenant,
                "created_at": t.created_at.isoformat(),
                "created_by": t.created_by,
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            }
            for t, tenant in rows
        ]


def revoke_token(db: Database, token_id: int, actor: Actor) -> datetime:
    if actor.role < Role.ADMIN or actor.tenant_scoped:
        raise Forbidden("managing tokens needs the admin role")
    now = db.clock.now()
    with db.transaction() as session:
        revoked_at = store.token_revoked_at(session, token_id)
        if revoked_at is None:
            raise NotFound(f"no token with id {token_id}")
        if revoked_at[0] is not None:
            return revoked_at[0]  # already revoked: revoking again changes nothing
        store.revoke_token(session, token_id, now)
    return now
