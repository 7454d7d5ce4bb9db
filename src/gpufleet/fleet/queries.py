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

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from gpufleet.adapters.db.models import (
    Allocation,
    Cluster,
    Gpu,
    IbSwitch,
    Node,
    NodeEvent,
    NodeLabel,
    NvlinkDomain,
    Rack,
    Sku,
    Supplier,
    Tenant,
)
from gpufleet.domain.lifecycle import STATE_POLICIES, NodeState, allowed_events, deadline, parse_state
from gpufleet.fleet.refs import resolve_node_id, tenant_visibility
from gpufleet.platform.context import Actor
from gpufleet.platform.database import Database
from gpufleet.platform.errors import InvalidInput

MAX_PAGE = 1000
DEFAULT_PAGE = 100
SORTABLE = {
    "id": Node.id,
    "hostname": Node.hostname,
    "serial": Node.serial,
    "state": Node.state,
    "state_since": Node.state_since,
    "created_at": Node.created_at,
    "updated_at": Node.updated_at,
}
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


def _label_exists(key: str, value: str | None) -> Any:
    clause = select(NodeLabel.node_id).where(NodeLabel.node_id == Node.id, NodeLabel.key == key)
    if value is not None:
        clause = clause.where(NodeLabel.value == value)
    return clause.exists()


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


def _base_query() -> Select[Any]:
    return (
        select(
            Node.id,
            Node.serial,
            Node.hostname,
            Node.state,
            Node.state_since,
            Node.version,
            Node.provider_id,
            Node.bmc_address,
            Node.labels,
            Node.attributes,
            Node.created_at,
            Node.updated_at,
            Cluster.name.label("cluster"),
            Supplier.name.label("supplier"),
            Sku.name.label("sku"),
            Sku.gpus_per_node.label("gpus"),
            Rack.name.label("rack"),
            NvlinkDomain.name.label("nvlink_domain"),
            IbSwitch.name.label("switch"),
        )
        .join(Cluster, Cluster.id == Node.cluster_id)
        .join(Supplier, Supplier.id == Node.supplier_id)
        .join(Sku, Sku.id == Node.sku_id)
        .outerjoin(Rack, Rack.id == Node.rack_id)
        .outerjoin(NvlinkDomain, NvlinkDomain.id == Node.nvlink_domain_id)
        .outerjoin(IbSwitch, IbSwitch.id == Node.switch_id)
    )


def _apply_filter(query: Select[Any], flt: NodeFilter, actor: Actor, now: datetime) -> Select[Any]:
    if flt.states:
        query = query.where(Node.state.in_(flt.states))
    # Filter on the foreign keys through scalar subqueries rather than on the joined names, so the planner can walk
    # the (cluster_id, state, id) index in order instead of joining first.
    if flt.cluster:
        query = query.where(Node.cluster_id == select(Cluster.id).where(Cluster.name == flt.cluster).scalar_subquery())
    if flt.supplier:
        query = query.where(
            Node.supplier_id == select(Supplier.id).where(Supplier.name == flt.supplier).scalar_subquery()
        )
    if flt.sku:
        query = query.where(Node.sku_id == select(Sku.id).where(Sku.name == flt.sku).scalar_subquery())
    if flt.rack:
        query = query.where(Rack.name == flt.rack)
    if flt.nvlink_domain:
        query = query.where(NvlinkDomain.name == flt.nvlink_domain)
    if flt.selector:
        for key, op, value in parse_selector(flt.selector):
            if op == "=":
                query = query.where(_label_exists(key, value))
            elif op == "!=":
                query = query.where(~_label_exists(key, value))
            elif op == "exists":
                query = query.where(_label_exists(key, None))
            else:
                query = query.where(~_label_exists(key, None))
    visibility = tenant_visibility(actor, now)
    if visibility is not None:
        query = query.where(visibility)
    return query


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
    session: Session,
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
    column = SORTABLE[sort_key]
    query = _apply_filter(_base_query(), flt or NodeFilter(), actor, now)
    if cursor:
        value, last_id = _decode_cursor(cursor, sort_key)
        if sort_key == "id":
            query = query.where(Node.id < last_id if descending else Node.id > last_id)
        elif descending:
            query = query.where(or_(column < value, and_(column == value, Node.id < last_id)))
        else:
            query = query.where(or_(column > value, and_(column == value, Node.id > last_id)))
    order: list[Any] = [column.desc(), Node.id.desc()] if descending else [column.asc(), Node.id.asc()]
    if sort_key == "id":
        order = order[:1]
    rows = session.execute(query.order_by(*order).limit(limit + 1)).all()
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


def node_detail(session: Session, ref: str, actor: Actor, now: datetime, event_limit: int = 500) -> dict[str, Any]:
    """A node with its GPUs, allocations, lifecycle obligations and event timeline (newest first)."""
    node_id = resolve_node_id(session, ref, actor, now)
    row = session.execute(_base_query().where(Node.id == node_id)).one()
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
    gpus = session.execute(
        select(Gpu.idx, Gpu.serial, Gpu.uuid, Gpu.pci_bus_id).where(Gpu.node_id == node_id).order_by(Gpu.idx)
    ).all()
    node["gpu_devices"] = [
        {"index": g.idx, "serial": g.serial, "uuid": g.uuid, "pci_bus_id": g.pci_bus_id} for g in gpus
    ]
    allocations = session.execute(
        select(Allocation.project, Allocation.starts_at, Allocation.ends_at, Tenant.name.label("tenant"))
        .join(Tenant, Tenant.id == Allocation.tenant_id)
        .where(Allocation.node_id == node_id)
        .order_by(Allocation.starts_at.desc())
    ).all()
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
    event_cluster = aliased(Cluster)
    events = session.execute(
        select(NodeEvent, event_cluster.name.label("cluster"))
        .outerjoin(event_cluster, event_cluster.id == NodeEvent.cluster_id)
        .where(NodeEvent.node_id == node_id)
        .order_by(NodeEvent.id.desc())
        .limit(event_limit)
    ).all()
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


def fleet_summary(session: Session, actor: Actor, now: datetime) -> dict[str, Any]:
    """Nodes and GPUs by state x cluster x supplier x SKU, in one grouped query."""
    query = (
        select(
            Node.state,
            Cluster.name.label("cluster"),
            Supplier.name.label("supplier"),
            Sku.name.label("sku"),
            func.count().label("nodes"),
            func.sum(Sku.gpus_per_node).label("gpus"),
        )
        .join(Cluster, Cluster.id == Node.cluster_id)
        .join(Supplier, Supplier.id == Node.supplier_id)
        .join(Sku, Sku.id == Node.sku_id)
        .group_by(Node.state, Cluster.name, Supplier.name, Sku.name)
    )
    visibility = tenant_visibility(actor, now)
    if visibility is not None:
        query = query.where(visibility)
    rows = session.execute(query).all()
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
