"""Reading the fleet: filtered node pages, node detail with its timeline, and the fleet summary.

Every list is a fixed number of queries whatever the page size (a test counts them): names come from joins,
labels from the node row itself, never from one query per node.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from gpufleet.domain.lifecycle import STATE_POLICIES, NodeState, allowed_events, deadline, parse_state
from gpufleet.fleet import store
from gpufleet.fleet.refs import resolve_node_id
from gpufleet.platform.context import Actor
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import InvalidInput

MAX_PAGE = 1000
DEFAULT_PAGE = 100
SORTABLE = store.SORT_COLUMNS
FIELDS = (
    "id",
    "serial",
    "hostname",
    "state",
    "state_since",
    "version",
    "cluster",
    "supplier",
    "sku",
    "gpus",
    "rack",
    "nvlink_domain",
    "switch",
    "provider_id",
    "bmc_address",
    "labels",
    "attributes",
    "created_at",
    "updated_at",
)
_LABEL_KEY = re.compile(r"^[A-Za-z0-9_./-]{1,100}$")


@dataclass(frozen=True)
class NodeFilter:
    states: tuple[str, ...] = ()
    cluster: str | None = None
    supplier: str | None = None
    sku: str | None = None
    rack: str | None = None
    nvlink_domain: str | None = None
    selector: str | None = None

    @staticmethod
    def build(
        state: str | None = None,
        cluster: str | None = None,
        supplier: str | None = None,
        sku: str | None = None,
        rack: str | None = None,
        nvlink_domain: str | None = None,
        selector: str | None = None,
    ) -> NodeFilter:
        states: tuple[str, ...] = ()
        if state:
            try:
                states = tuple(parse_state(s).value for s in state.split(",") if s.strip())
            except ValueError as exc:
                raise InvalidInput(str(exc), field="state") from None
        return NodeFilter(states, cluster, supplier, sku, rack, nvlink_domain, selector)


@dataclass(frozen=True)
class NodePage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def parse_selector(selector: str) -> list[tuple[str, str, str | None]]:
    """Parse a Kubernetes-style label selector: ``k=v``, ``k!=v``, ``k`` (exists) and ``!k`` (absent)."""
    terms: list[tuple[str, str, str | None]] = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            op: str = "!="
        elif "=" in term:
            key, value = term.split("=", 1)
            key = key.rstrip("=")
            op = "="
        elif term.startswith("!"):
            key, value, op = term[1:], "", "!"
        else:
            key, value, op = term, "", "exists"
        key = key.strip()
        if not _LABEL_KEY.match(key):
            raise InvalidInput(f"bad label key '{key}' in selector term '{term}'", field="selector")
        terms.append((key, op, value.strip() if op in ("=", "!=") else None))
    return terms


def _encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort_key: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, node_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if sort_key in ("state_since", "created_at", "updated_at"):
            value = datetime.fromisoformat(value)
        if not isinstance(node_id, str):
            raise ValueError("cursor id")
        return value, node_id
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise InvalidInput("the cursor is not one this server handed out", field="cursor") from None


def _rows_to_dicts(rows: Sequence[Any], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows as dicts of the wanted fields, times as ``datetime`` for the entry point to write. Positions are looked
    up once per page: attribute access per field and per row cost more than the query for a 500-node page."""
    if not rows:
        return []
    index = rows[0]._fields.index
    if len(fields) == 1:
        position = index(fields[0])
        return [{fields[0]: row[position]} for row in rows]
    pick = itemgetter(*(index(name) for name in fields))
    return [dict(zip(fields, pick(row), strict=True)) for row in rows]


def parse_fields(fields: str | None) -> tuple[str, ...]:
    if not fields:
        return FIELDS
    wanted = tuple(f.strip() for f in fields.split(",") if f.strip())
    unknown = [f for f in wanted if f not in FIELDS]
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}; choose from {', '.join(FIELDS)}", field="fields")
    return wanted if "id" in wanted else ("id", *wanted)


def list_nodes(
    session: UnitOfWork,
    actor: Actor,
    now: datetime,
    flt: NodeFilter | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
    sort: str = "id",
    fields: tuple[str, ...] = FIELDS,
) -> NodePage:
    """One page of nodes in a stable keyset order; pass ``next_cursor`` back for the next page."""
    if limit < 1 or limit > MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    descending = sort.startswith("-")
    sort_key = sort.lstrip("-")
    if sort_key not in SORTABLE:
        raise InvalidInput(f"cannot sort by '{sort_key}'; choose from {', '.join(SORTABLE)}", field="sort")
    flt = flt or NodeFilter()
    selector = parse_selector(flt.selector) if flt.selector else []
    after = _decode_cursor(cursor, sort_key) if cursor else None
    rows = store.node_page(
        session,
        actor,
        now,
        states=flt.states,
        cluster=flt.cluster,
        supplier=flt.supplier,
        sku=flt.sku,
        rack=flt.rack,
        nvlink_domain=flt.nvlink_domain,
        selector=selector,
        sort_key=sort_key,
        descending=descending,
        after=after,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = _rows_to_dicts(rows, fields)
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = _encode_cursor([getattr(last, sort_key), last.id])
    return NodePage(items, next_cursor)


def iter_nodes(db: Database, actor: Actor, flt: NodeFilter, fields: tuple[str, ...] = FIELDS) -> list[dict[str, Any]]:
    """Every matching node, fetched page by page so memory stays bounded by the page size per query."""
    now = db.clock.now()
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    with db.reader() as session:
        while True:
            page = list_nodes(session, actor, now, flt, limit=MAX_PAGE, cursor=cursor, fields=fields)
            out.extend(page.items)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor


def node_detail(session: UnitOfWork, ref: str, actor: Actor, now: datetime, event_limit: int = 500) -> dict[str, Any]:
    """A node with its GPUs, allocations, lifecycle obligations and event timeline (newest first)."""
    node_id = resolve_node_id(session, ref, actor, now)
    row = store.node_row(session, node_id)
    node = _rows_to_dicts([row], FIELDS)[0]
    state = NodeState(row.state)
    policy = STATE_POLICIES[state]
    due = deadline(state, row.state_since)
    node["lifecycle"] = {
        "action": policy.action,
        "owner": policy.owner,
        "deadline": due.isoformat() if due else None,
        "overdue": bool(due and now >= due),
        "allowed_events": allowed_events(state),
    }
    gpus = store.gpu_devices(session, node_id)
    node["gpu_devices"] = [
        {"index": g.idx, "serial": g.serial, "uuid": g.uuid, "pci_bus_id": g.pci_bus_id} for g in gpus
    ]
    allocations = store.node_allocations(session, node_id)
    node["allocations"] = [
        {
            "tenant": a.tenant,
            "project": a.project,
            "starts_at": a.starts_at.isoformat(),
            "ends_at": a.ends_at.isoformat() if a.ends_at else None,
            "active": a.starts_at <= now and (a.ends_at is None or a.ends_at > now),
        }
        for a in allocations
    ]
    events = store.node_events(session, node_id, event_limit)
    node["events"] = [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "kind": e.kind,
            "event": e.event,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "actor": e.actor,
            "reason": e.reason,
            "correlation_id": e.correlation_id,
            "cluster": cluster,
            "data": e.data,
        }
        for e, cluster in events
    ]
    return node


def fleet_summary(session: UnitOfWork, actor: Actor, now: datetime) -> dict[str, Any]:
    """Nodes and GPUs by state x cluster x supplier x SKU, in one grouped query."""
    rows = store.summary_groups(session, actor, now)
    groups = [
        {
            "state": r.state,
            "cluster": r.cluster,
            "supplier": r.supplier,
            "sku": r.sku,
            "nodes": int(r.nodes),
            "gpus": int(r.gpus or 0),
        }
        for r in rows
    ]
    by_state: dict[str, dict[str, int]] = {s.value: {"nodes": 0, "gpus": 0} for s in NodeState}
    by_cluster: dict[str, dict[str, int]] = {}
    for g in groups:
        by_state[g["state"]]["nodes"] += g["nodes"]
        by_state[g["state"]]["gpus"] += g["gpus"]
        bucket = by_cluster.setdefault(g["cluster"], {"nodes": 0, "gpus": 0})
        bucket["nodes"] += g["nodes"]
        bucket["gpus"] += g["gpus"]
    return {
        "nodes": sum(g["nodes"] for g in groups),
        "gpus": sum(g["gpus"] for g in groups),
        "gpus_in_service": by_state[NodeState.IN_SERVICE.value]["gpus"],
        "by_state": by_state,
        "by_cluster": by_cluster,
        "groups": groups,
    }
