"""Finding a node the way people name it (chassis id, serial or hostname) and what a caller may see."""

from __future__ import annotations

from datetime import datetime

from gpufleet.fleet import store
from gpufleet.fleet.store import has_active_allocation, tenant_visibility
from gpufleet.platform.context import Actor
from gpufleet.platform.database import UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound

__all__ = ["has_active_allocation", "resolve_node_id", "tenant_visibility"]


def resolve_node_id(session: UnitOfWork, ref: str, actor: Actor, now: datetime) -> str:
    """Turn a chassis id, serial or hostname into the chassis id, refusing what the caller may not see."""
    ref = ref.strip()
    if not ref:
        raise InvalidInput("a node reference is required", field="node")
    if len(ref) > 255:
        raise InvalidInput("a node reference is at most 255 characters", field="node")
    found = store.node_ids_named(session, ref)
    if not found:
        raise NotFound(f"no node with chassis id, serial or hostname '{ref}'")
    if len(found) > 1:
        ids = ", ".join(sorted(found))
        raise InvalidInput(f"'{ref}' names several nodes ({ids}); use the chassis id", field="node")
    node_id = found[0]
    if not store.visible_to(session, node_id, actor, now):
        raise Forbidden(f"node '{ref}' is not allocated to your tenant")
    return node_id
