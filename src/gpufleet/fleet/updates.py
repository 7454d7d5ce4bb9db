"""Editing a node's labels and custom attributes, with the same version check and history as a transition.

Both maps take JSON merge-patch semantics (RFC 7396, one level deep): a key set to a value is added or replaced, a
key set to ``null`` is removed, keys not named stay as they are. That lets two people edit different labels without
sending each other's back, while ``If-Match`` still catches edits made from a stale read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpufleet.fleet import store
from gpufleet.fleet.lifecycle import check_reason
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, VersionConflict

LABEL_KEY = re.compile(r"^[A-Za-z0-9_./-]{1,100}$")
MAX_LABEL_VALUE = 255
MAX_KEYS = 200


@dataclass(frozen=True)
class NodeUpdateResult:
    node_id: str
    version: int
    changed: bool
    labels: dict[str, Any]
    attributes: dict[str, Any]
    at: datetime
    event_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "version": self.version,
            "changed": self.changed,
            "labels": self.labels,
            "attributes": self.attributes,
            "at": self.at.isoformat(),
            "event_id": self.event_id,
        }


def _check_labels(labels: dict[str, Any]) -> None:
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY.match(key):
            raise InvalidInput(f"bad label key '{key}': 1 to 100 letters, digits or _ . / -", field=f"labels.{key}")
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidInput(f"a label value is text, got {type(value).__name__}", field=f"labels.{key}")
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidInput(f"longer than {MAX_LABEL_VALUE} characters", field=f"labels.{key}")


def _check_attributes(attributes: dict[str, Any]) -> None:
    for key in attributes:
        if not isinstance(key, str) or not 1 <= len(key) <= 100:
            raise InvalidInput("an attribute name is 1 to 100 characters", field=f"attributes.{key}")


def _merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def update_node(
    db: Database,
    node_ref: str,
    actor: Actor,
    reason: str | None,
    labels: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
    expected_version: int | None = None,
) -> NodeUpdateResult:
    """Apply a labels/attributes patch, bump the version and record an ``updated`` event, all in one transaction.

    A patch that changes nothing writes nothing and keeps the version, so repeating a request is harmless.
    """
    if actor.role < Role.OPERATOR:
        raise Forbidden("changing a node needs the operator role")
    if actor.tenant_scoped:
        raise Forbidden("a tenant-scoped token cannot change a node")
    if labels is None and attributes is None:
        raise InvalidInput("nothing to change: give labels and/or attributes", field="labels")
    text = check_reason(reason)
    _check_labels(labels or {})
    _check_attributes(attributes or {})
    now = db.clock.now()
    with db.transaction() as session:
        node_id = resolve_node_id(session, node_ref, actor, now)
        row = store.lock_node_maps(session, node_id)
        if expected_version is not None and row.version != expected_version:
            raise VersionConflict(node_id, expected_version, row.version)
        old_labels = dict(row.labels or {})
        old_attributes = dict(row.attributes or {})
        new_labels = _merge(old_labels, labels or {})
        new_attributes = _merge(old_attributes, attributes or {})
        if len(new_labels) > MAX_KEYS or len(new_attributes) > MAX_KEYS:
            raise InvalidInput(f"a node carries at most {MAX_KEYS} labels and {MAX_KEYS} attributes", field="labels")
        changes: dict[str, list[Any]] = {}
        if new_labels != old_labels:
            changes["labels"] = [old_labels, new_labels]
        if new_attributes != old_attributes:
            changes["attributes"] = [old_attributes, new_attributes]
        if not changes:
            return NodeUpdateResult(node_id, row.version, False, old_labels, old_attributes, now, None)
        version = row.version + 1
        if not store.write_node_maps(session, node_id, row.version, new_labels, new_attributes, version, now):
            raise VersionConflict(node_id, row.version, store.node_version(session, node_id))
        if "labels" in changes:
            # The label rows are what selectors query; they must say exactly what the node row says.
            store.replace_node_labels(session, node_id, new_labels)
        event_id = store.insert_node_event(
            session, node_id, "updated", row.state, row.cluster_id, text, actor, now, {"changes": changes}
        )
    return NodeUpdateResult(node_id, version, True, new_labels, new_attributes, now, event_id)
