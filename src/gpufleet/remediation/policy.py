"""The health policy in force: the shipped file, then overrides for the fleet, a cluster, and a pool in it.

Overrides are rows with a reason, never edits of the file, so what changed, who changed it and why stays on record,
and revoking one brings back what was there before. A pool is the node label ``pool`` within a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from gpufleet.domain.xid_policy import PolicyError, XidPolicy, apply_overrides, check_override, read_policy
from gpufleet.fleet.lifecycle import check_reason
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound
from gpufleet.remediation import store

POLICY_FILE = "xid_policy.yaml"


@lru_cache(maxsize=1)
def base_policy() -> XidPolicy:
    """The shipped policy. A broken file is a build error, so it raises rather than falling back."""
    text = resources.files("gpufleet.remediation").joinpath(POLICY_FILE).read_text(encoding="utf-8")
    return read_policy(yaml.safe_load(text) or {}, source=POLICY_FILE)


Scope = tuple[int | None, str | None]
"""(cluster id, pool): (None, None) is fleet-wide."""


class PolicyBook:
    """The overrides read once, and the policy for each (cluster, pool) built on first use: one query per pass."""

    def __init__(self, session: UnitOfWork, base: XidPolicy | None = None) -> None:
        self.base = base or base_policy()
        rows = store.active_overrides(session)
        self._by_scope: dict[Scope, list[tuple[str, Any]]] = {}
        for row in rows:
            self._by_scope.setdefault((row.cluster_id, row.pool), []).append((row.key, row.value))
        self._built: dict[Scope, XidPolicy] = {}

    @property
    def uniform(self) -> bool:
        """No override names a cluster or pool: one policy holds everywhere."""
        return all(scope == (None, None) for scope in self._by_scope)

    def get(self, cluster_id: int | None, pool: str | None = None) -> XidPolicy:
        key = (cluster_id, pool)
        policy = self._built.get(key)
        if policy is None:
            overrides = list(self._by_scope.get((None, None), []))
            if cluster_id is not None:
                overrides += self._by_scope.get((cluster_id, None), [])
                if pool is not None:
                    overrides += self._by_scope.get((cluster_id, pool), [])
            policy = apply_overrides(self.base, overrides) if overrides else self.base
            self._built[key] = policy
        return policy


@dataclass(frozen=True)
class OverrideView:
    id: int
    cluster: str | None
    pool: str | None
    key: str
    value: Any
    reason: str
    actor: str
    created_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cluster": self.cluster,
            "pool": self.pool,
            "key": self.key,
            "value": self.value,
            "reason": self.reason,
            "actor": self.actor,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_by": self.revoked_by,
            "revoke_reason": self.revoke_reason,
        }


def _reader(actor: Actor) -> None:
    if actor.tenant_scoped:
        raise Forbidden("the health policy is fleet data; a tenant-scoped token cannot read it")


def _writer(actor: Actor) -> None:
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("changing the health policy needs the operator role and a token not scoped to a tenant")


def _cluster(session: UnitOfWork, name: str | None) -> tuple[int | None, str | None]:
    if name is None or not name.strip():
        return None, None
    row = store.cluster_named(session, name.strip())
    if row is None:
        raise NotFound(f"no cluster named '{name}'")
    return row.id, row.name


def _pool(cluster_id: int | None, pool: str | None) -> str | None:
    if pool is None or not pool.strip():
        return None
    if cluster_id is None:
        raise InvalidInput("a pool override needs its cluster", field="cluster")
    if len(pool.strip()) > 100:
        raise InvalidInput("a pool name is at most 100 characters", field="pool")
    return pool.strip()


def _views(
    session: UnitOfWork, cluster_id: int | None, pool: str | None, with_revoked: bool, all_pools: bool = False
) -> list[OverrideView]:
    names = store.cluster_names(session)
    out = []
    for row in store.overrides(session, with_revoked):
        applies = row.cluster_id is None or (
            row.cluster_id == cluster_id and (all_pools or row.pool is None or row.pool == pool)
        )
        if cluster_id is not None and not applies:
            continue
        out.append(
            OverrideView(
                row.id,
                names.get(row.cluster_id) if row.cluster_id is not None else None,
                row.pool,
                row.key,
                row.value,
                row.reason,
                row.actor,
                row.created_at,
                row.revoked_at,
                row.revoked_by,
                row.revoke_reason,
            )
        )
    return out


def policy_document(policy: XidPolicy) -> dict[str, Any]:
    """The policy as data: what ``gpufleet policy show --output json`` prints."""
    return {
        "version": policy.version,
        "source": policy.source,
        "settings": policy.settings.as_dict(),
        "ladder": [
            {"action": s.action.value, "attempts": s.attempts, "time_limit_minutes": s.time_limit.total_seconds() / 60}
            for s in policy.ladder
        ],
        "backoff": {
            "initial_seconds": policy.backoff.initial.total_seconds(),
            "factor": policy.backoff.factor,
            "max_seconds": policy.backoff.maximum.total_seconds(),
        },
        "follows": sorted(policy.follows),
        "related": [
            {
                "code": r.code,
                "with_any": list(r.with_any),
                "action": r.action.value,
                "drain": r.drain.value,
                "reason": r.reason,
            }
            for r in policy.related
        ],
        "repeats": [
            {
                "name": r.name,
                "counts": r.counts,
                "kinds": [k.value for k in r.kinds],
                "count": r.count,
                "window_hours": r.window.total_seconds() / 3600,
                "action": r.action.value,
                "reason": r.reason,
            }
            for r in policy.repeats
        ],
        "prefixes": [
            {"prefix": p.prefix, "min_severity": p.min_severity, **p.rule.as_dict(), "code": p.prefix + "*"}
            for p in policy.prefixes
        ],
        "codes": {
            code: rule.as_dict() for code, rule in sorted(policy.codes.items(), key=lambda kv: _code_order(kv[0]))
        },
    }


def _code_order(code: str) -> tuple[str, int, str]:
    prefix, _, rest = code.partition(":")
    return (prefix, int(rest) if rest.isdigit() else -1, rest)


def show_policy(db: Database, actor: Actor, cluster: str | None = None, pool: str | None = None) -> dict[str, Any]:
    """The policy in force for the fleet, a cluster or a pool, with the overrides that made it."""
    _reader(actor)
    with db.reader() as session:
        cluster_id, name = _cluster(session, cluster)
        pool_name = _pool(cluster_id, pool)
        policy = PolicyBook(session).get(cluster_id, pool_name)
        overrides = _views(session, cluster_id, pool_name, with_revoked=False)
    return {
        "scope": {"cluster": name, "pool": pool_name},
        **policy_document(policy),
        "overrides": [o.as_dict() for o in overrides],
    }


def set_override(
    db: Database,
    actor: Actor,
    key: str,
    value: Any,
    reason: str | None,
    cluster: str | None = None,
    pool: str | None = None,
) -> OverrideView:
    """Record an override (``code:<code>`` with rule fields, or ``setting:<name>`` with a value) with its reason."""
    _writer(actor)
    text = check_reason(reason)
    with db.transaction() as session:
        cluster_id, name = _cluster(session, cluster)
        pool_name = _pool(cluster_id, pool)
        try:
            norm_key, norm_value = check_override(key, value, PolicyBook(session).get(cluster_id, pool_name))
        except PolicyError as exc:
            raise InvalidInput(str(exc).split(": ", 1)[-1], field=exc.field) from None
        row = store.add_override(
            session,
            cluster_id=cluster_id,
            pool=pool_name,
            key=norm_key,
            value=norm_value,
            reason=text,
            actor=actor.name,
            created_at=db.clock.now(),
        )
        return OverrideView(row.id, name, pool_name, norm_key, norm_value, text, actor.name, row.created_at)


def revoke_override(db: Database, actor: Actor, override_id: int, reason: str | None) -> OverrideView:
    """Take an override back (kept on record); revoking twice changes nothing."""
    _writer(actor)
    text = check_reason(reason)
    with db.transaction() as session:
        row = store.override_for_update(session, override_id)
        if row is None:
            raise NotFound(f"no policy override with id {override_id}")
        if row.revoked_at is None:
            row.revoked_at = db.clock.now()
            row.revoked_by = actor.name
            row.revoke_reason = text
        name = None
        if row.cluster_id is not None:
            name = store.cluster_name(session, row.cluster_id)
        return OverrideView(
            row.id,
            name,
            row.pool,
            row.key,
            row.value,
            row.reason,
            row.actor,
            row.created_at,
            row.revoked_at,
            row.revoked_by,
            row.revoke_reason,
        )


def list_overrides(
    db: Database, actor: Actor, cluster: str | None = None, with_revoked: bool = False
) -> list[OverrideView]:
    _reader(actor)
    with db.reader() as session:
        cluster_id, _ = _cluster(session, cluster)
        return _views(session, cluster_id, None, with_revoked, all_pools=True)
