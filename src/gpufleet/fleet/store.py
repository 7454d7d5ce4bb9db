"""Every statement of the fleet capability: nodes, their events, GPUs, labels, allocations, tokens and reference data.

The use cases beside this module decide; this module reads and writes. They hand it the open session (a
``UnitOfWork``) and get back plain values, rows or ORM entities. Statements that hot paths run are built once, at
import or on first use of a given shape (``lru_cache``), and reused; the dialect-specific forms live here too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Result,
    Row,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from gpufleet.adapters.db.models import (
    Allocation,
    ApiToken,
    Cluster,
    Gpu,
    IbPartition,
    IbSwitch,
    Node,
    NodeEvent,
    NodeLabel,
    NvlinkDomain,
    Rack,
    Sku,
    Supplier,
    Tenant,
    UTCDateTime,
    ValidationAttempt,
)
from gpufleet.domain.lifecycle import STATE_POLICIES, NodeState, unguarded_targets
from gpufleet.platform.context import Actor

NODES = cast(Table, Node.__table__)
EVENTS = cast(Table, NodeEvent.__table__)


# ---------------------------------------------------------------------------------------------------------------
# Node events shared by several use cases.


def insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """Append event rows in one executemany."""
    session.execute(insert(NodeEvent), rows)


def record_node_event(
    session: Session, node_id: str, kind: str, reason: str, actor: Actor, now: datetime, data: dict[str, Any]
) -> None:
    """An event that leaves the node where it is (allocated, released), stamped with its state and cluster."""
    state, cluster_id = session.execute(select(Node.state, Node.cluster_id).where(Node.id == node_id)).one()
    session.execute(
        insert(NodeEvent).values(
            node_id=node_id,
            at=now,
            kind=kind,
            event=None,
            from_state=state,
            to_state=state,
            actor=actor.name,
            reason=reason,
            correlation_id=actor.correlation_id,
            cluster_id=cluster_id,
            data=data,
        )
    )


def node_version(session: Session, node_id: str) -> int:
    """The node's version now: what a writer that lost a version race reports."""
    return session.execute(select(Node.version).where(Node.id == node_id)).scalar_one()


# ---------------------------------------------------------------------------------------------------------------
# Node references and what a caller may see.


def has_active_allocation(session: Session, node_id: str, now: datetime) -> bool:
    clause = exists().where(
        Allocation.node_id == node_id,
        Allocation.starts_at <= now,
        or_(Allocation.ends_at.is_(None), Allocation.ends_at > now),
    )
    return bool(session.execute(select(clause)).scalar())


def tenant_visibility(actor: Actor, now: datetime) -> ColumnElement[bool] | None:
    """The filter that limits a tenant-scoped caller to nodes currently allocated to its tenant."""
    if actor.tenant_id is None:
        return None
    return exists().where(
        Allocation.node_id == Node.id,
        Allocation.tenant_id == actor.tenant_id,
        Allocation.starts_at <= now,
        or_(Allocation.ends_at.is_(None), Allocation.ends_at > now),
    )


def node_ids_named(session: Session, ref: str) -> list[str]:
    """The nodes ``ref`` names: the node with that chassis id, else those with that serial or hostname (at most 20),
    keeping only the ones not decommissioned when there are any."""
    node_id = session.execute(select(Node.id).where(Node.id == ref)).scalar_one_or_none()
    if node_id is not None:
        return [node_id]
    candidates = session.execute(
        select(Node.id, Node.state).where(or_(Node.serial == ref, Node.hostname == ref)).limit(20)
    ).all()
    live = [c for c in candidates if c.state != NodeState.DECOMMISSIONED] or candidates
    return [c.id for c in live]


def visible_to(session: Session, node_id: str, actor: Actor, now: datetime) -> bool:
    """Whether the caller may see the node: always, unless its token is scoped to a tenant."""
    visibility = tenant_visibility(actor, now)
    if visibility is None:
        return True
    allowed = session.execute(select(Node.id).where(Node.id == node_id, visibility)).scalar_one_or_none()
    return allowed is not None


# ---------------------------------------------------------------------------------------------------------------
# Admission: the node's latest validation attempt.


def latest_validation(session: Session, node_id: str) -> Row[str, int, datetime] | None:
    """Status, cluster and finish time of the node's latest validation attempt, if it has one."""
    return session.execute(
        select(ValidationAttempt.status, ValidationAttempt.cluster_id, ValidationAttempt.finished_at)
        .where(ValidationAttempt.node_id == node_id)
        .order_by(ValidationAttempt.attempt.desc())
        .limit(1)
    ).one_or_none()


# ---------------------------------------------------------------------------------------------------------------
# Lifecycle transitions: the single-statement forms for unguarded events, and the checked path's reads and writes.

NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _constant(name: str) -> Any:
    """A state or event name written into the statement's text.

    These come from the declared lifecycle table, never from a caller, and are checked to be plain names; as text
    they cost nothing per execution, where a bound constant is processed on every call.
    """
    if not NAME.match(name):
        raise ValueError(f"not a lifecycle name: {name!r}")
    return literal_column(f"'{name}'", String)


def _movable(event: str, check_version: bool) -> tuple[Any, Any]:
    """The WHERE clause that picks the node only from a state this event leaves, and the CASE naming its target."""
    targets = unguarded_targets(event)
    target_of = case(*((NODES.c.state == _constant(s.value), _constant(t.value)) for s, t in targets.items()))
    where = [NODES.c.id == bindparam("b_node"), NODES.c.state.in_([_constant(s.value) for s in targets])]
    if check_version:
        where.append(NODES.c.version == bindparam("b_version"))
    return and_(*where), target_of


@lru_cache(maxsize=256)
def _conditional_update(event: str, check_version: bool) -> Any:
    """The one-statement node UPDATE for an unguarded event, built once per event and reused.

    Plain Core on the table (not the ORM entity) with bind parameters keeps the hot path free of per-call statement
    construction and ORM synchronisation, which otherwise cost more than the database work itself.
    """
    where, target_of = _movable(event, check_version)
    return (
        update(NODES)
        .where(where)
        .values(
            previous_state=NODES.c.state,
            state=target_of,
            state_since=bindparam("b_now", type_=UTCDateTime()),
            version=NODES.c.version + ONE,
            updated_at=bindparam("b_now", type_=UTCDateTime()),
        )
        .returning(NODES.c.previous_state, NODES.c.state, NODES.c.version, NODES.c.cluster_id, NODES.c.id)
    )


_INSERT_EVENT = insert(EVENTS)
_EVENT_COLUMNS = (
    "node_id",
    "at",
    "kind",
    "event",
    "from_state",
    "to_state",
    "actor",
    "reason",
    "correlation_id",
    "cluster_id",
    "data",
    "version",
)


ONE: Any = literal_column("1")
NO_DATA: dict[str, Any] = {"sqlite": literal_column("'{}'"), "postgresql": literal_column("'{}'::json")}
"""An event without data, as text in the statement: most transitions carry none, and a bound JSON value is
serialised on every call."""


def _event_from(
    event: str, node_id: Any, from_state: Any, to_state: Any, cluster_id: Any, version: Any, data: Any
) -> Any:
    """INSERT of the event row from a SELECT that yields the node's side of it; returns the row it wrote."""
    source = select(
        node_id,
        bindparam("b_now", type_=UTCDateTime()),
        _constant("transition"),
        _constant(event),
        from_state,
        to_state,
        bindparam("b_actor"),
        bindparam("b_reason"),
        bindparam("b_correlation_id"),
        cluster_id,
        data,
        version,
    )
    return (
        insert(EVENTS)
        .from_select(list(_EVENT_COLUMNS), source)
        .returning(EVENTS.c.from_state, EVENTS.c.to_state, EVENTS.c.version, EVENTS.c.cluster_id, EVENTS.c.id)
    )


def _data(dialect: str, with_data: bool) -> Any:
    return bindparam("b_data", type_=EVENTS.c.data.type) if with_data else NO_DATA[dialect]


@lru_cache(maxsize=256)
def _update_with_event(event: str, check_version: bool, with_data: bool) -> Any:
    """PostgreSQL: the conditional UPDATE and its event INSERT as one statement (a data-modifying CTE).

    One round trip instead of two; both rows still commit or vanish together.
    """
    moved = _conditional_update(event, check_version).cte("moved")
    m = moved.c
    return _event_from(event, m.id, m.previous_state, m.state, m.cluster_id, m.version, _data("postgresql", with_data))


@lru_cache(maxsize=256)
def _event_with_update(event: str, check_version: bool, with_data: bool) -> Any:
    """SQLite: the event INSERT claims the node's next version and a trigger applies it to the node (migration 0006,
    ``node_events_apply_transition``; ``test_sqlite_transitions_rely_on_the_trigger_that_moves_the_node`` holds it).

    SQLite has no data-modifying CTE; this keeps the transition one statement there too, both rows in the same
    statement's atomic write. The SELECT finds no row when the node is not in a state the event leaves (or has moved
    past the expected version), and then nothing is written.
    """
    where, target_of = _movable(event, check_version)
    claimed = (
        select(
            NODES.c.id,
            NODES.c.state,
            target_of.label("to_state"),
            NODES.c.cluster_id,
            (NODES.c.version + ONE).label("version"),
        )
        .where(where)
        .subquery("claimed")
    )
    c = claimed.c
    return _event_from(event, c.id, c.state, c.to_state, c.cluster_id, c.version, _data("sqlite", with_data))


def move_in_one_statement(
    session: Session,
    node_id: str,
    event: str,
    reason: str,
    actor: Actor,
    now: datetime,
    expected_version: int | None,
    data: dict[str, Any] | None,
) -> Row[*tuple[Any, ...]] | None:
    """Move the node by an unguarded event and write its event row in one statement.

    Returns the event row (from state, to state, version, cluster id, event id), or ``None`` when the node is not in
    a state the event leaves (or not at ``expected_version``), in which case nothing was written.
    """
    params: dict[str, Any] = {
        "b_node": node_id,
        "b_now": now,
        "b_actor": actor.name,
        "b_reason": reason,
        "b_correlation_id": actor.correlation_id,
    }
    if expected_version is not None:
        params["b_version"] = expected_version
    if data:
        params["b_data"] = data
    connection = session.connection()
    one_statement = _update_with_event if connection.dialect.name == "postgresql" else _event_with_update
    return connection.execute(one_statement(event, expected_version is not None, bool(data)), params).one_or_none()


def node_for_transition(session: Session, node_id: str) -> Row[str, int, int, datetime] | None:
    """The node's state, version, cluster id and when it entered its state."""
    return session.execute(
        select(Node.state, Node.version, Node.cluster_id, Node.state_since).where(Node.id == node_id)
    ).one_or_none()


def move_node(session: Session, node_id: str, version: int, from_state: str, to_state: str, now: datetime) -> bool:
    """Move the node if it is still at ``version``; ``False`` when another writer got there first."""
    result = session.execute(
        update(Node)
        .where(Node.id == node_id, Node.version == version)
        .values(previous_state=from_state, state=to_state, state_since=now, version=version + 1, updated_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def insert_transition_event(
    session: Session,
    node_id: str,
    event: str,
    from_state: str,
    to_state: str,
    version: int,
    cluster_id: int,
    reason: str,
    actor: Actor,
    now: datetime,
    data: dict[str, Any] | None,
) -> int:
    """Append a transition's event row; returns its id."""
    inserted = session.connection().execute(
        _INSERT_EVENT,
        {
            "node_id": node_id,
            "at": now,
            "kind": "transition",
            "event": event,
            "from_state": from_state,
            "to_state": to_state,
            "actor": actor.name,
            "reason": reason,
            "correlation_id": actor.correlation_id,
            "cluster_id": cluster_id,
            "data": data or {},
            "version": version,
        },
    )
    return int(inserted.inserted_primary_key[0])  # type: ignore[index]


# ---------------------------------------------------------------------------------------------------------------
# Editing a node's labels and attributes.


def lock_node_maps(session: Session, node_id: str) -> Row[*tuple[Any, ...]]:
    """The node's labels, attributes, version, state and cluster id, locked until the transaction ends."""
    return session.execute(
        select(Node.labels, Node.attributes, Node.version, Node.state, Node.cluster_id)
        .where(Node.id == node_id)
        .with_for_update()
    ).one()


def write_node_maps(
    session: Session,
    node_id: str,
    version: int,
    labels: dict[str, Any],
    attributes: dict[str, Any],
    new_version: int,
    now: datetime,
) -> bool:
    """Store new labels and attributes if the node is still at ``version``; ``False`` when it moved on."""
    written = session.execute(
        update(Node)
        .where(Node.id == node_id, Node.version == version)
        .values(labels=labels, attributes=attributes, version=new_version, updated_at=now)
    )
    return bool(written.rowcount == 1)  # type: ignore[attr-defined]


def replace_node_labels(session: Session, node_id: str, labels: dict[str, Any]) -> None:
    """Make the node's label rows, which selectors query, say exactly ``labels``."""
    session.execute(delete(NodeLabel).where(NodeLabel.node_id == node_id))
    if labels:
        session.execute(insert(NodeLabel), [{"node_id": node_id, "key": k, "value": v} for k, v in labels.items()])


def insert_node_event(
    session: Session,
    node_id: str,
    kind: str,
    state: str,
    cluster_id: int,
    reason: str,
    actor: Actor,
    now: datetime,
    data: dict[str, Any],
) -> int:
    """Append an event that leaves the node in ``state``; returns its id."""
    event_id = session.execute(
        insert(NodeEvent)
        .values(
            node_id=node_id,
            at=now,
            kind=kind,
            event=None,
            from_state=state,
            to_state=state,
            actor=actor.name,
            reason=reason,
            correlation_id=actor.correlation_id,
            cluster_id=cluster_id,
            data=data,
        )
        .returning(NodeEvent.id)
    ).scalar_one()
    return int(event_id)


# ---------------------------------------------------------------------------------------------------------------
# Allocations.


def lock_node_state(session: Session, node_id: str) -> str:
    """The node's state, with the node locked so two allocations for it are decided one after the other."""
    return session.execute(select(Node.state).where(Node.id == node_id).with_for_update()).scalar_one()


def tenant_id_named(session: Session, name: str) -> int | None:
    return session.execute(select(Tenant.id).where(Tenant.name == name)).scalar_one_or_none()


def overlapping_allocations(
    session: Session, node_id: str, start: datetime, ends_at: datetime | None
) -> Sequence[Row[Allocation, str]]:
    """The node's allocations (with their tenant's name) that overlap ``start`` to ``ends_at``, earliest first."""
    return session.execute(
        select(Allocation, Tenant.name)
        .join(Tenant, Tenant.id == Allocation.tenant_id)
        .where(
            Allocation.node_id == node_id,
            or_(Allocation.ends_at.is_(None), Allocation.ends_at > start),
            *([Allocation.starts_at < ends_at] if ends_at is not None else []),
        )
        .order_by(Allocation.starts_at)
    ).all()


def insert_allocation(
    session: Session,
    node_id: str,
    tenant_id: int,
    project: str | None,
    starts_at: datetime,
    ends_at: datetime | None,
) -> Allocation:
    allocation_id = session.execute(
        insert(Allocation)
        .values(node_id=node_id, tenant_id=tenant_id, project=project, starts_at=starts_at, ends_at=ends_at)
        .returning(Allocation.id)
    ).scalar_one()
    return session.execute(select(Allocation).where(Allocation.id == allocation_id)).scalar_one()


def lock_allocation(session: Session, allocation_id: int) -> Row[Allocation, str] | None:
    """The allocation and its tenant's name, locked until the transaction ends."""
    return session.execute(
        select(Allocation, Tenant.name)
        .join(Tenant, Tenant.id == Allocation.tenant_id)
        .where(Allocation.id == allocation_id)
        .with_for_update(of=Allocation)
    ).one_or_none()


def set_allocation_end(session: Session, allocation_id: int, ends_at: datetime) -> None:
    session.execute(update(Allocation).where(Allocation.id == allocation_id).values(ends_at=ends_at))


def allocations(
    session: Session, now: datetime, node_id: str | None, tenant: str | None, active: bool
) -> Sequence[Row[Allocation, str]]:
    """At most 1000 allocations newest first, with their tenant's name, optionally for one node or tenant, or only
    those in force at ``now``."""
    query = select(Allocation, Tenant.name).join(Tenant, Tenant.id == Allocation.tenant_id)
    if node_id:
        query = query.where(Allocation.node_id == node_id)
    if tenant:
        query = query.where(Tenant.name == tenant)
    if active:
        query = query.where(Allocation.starts_at <= now, or_(Allocation.ends_at.is_(None), Allocation.ends_at > now))
    return session.execute(query.order_by(Allocation.starts_at.desc(), Allocation.id.desc()).limit(1000)).all()


# ---------------------------------------------------------------------------------------------------------------
# API tokens.

_TOKENS = cast(Table, ApiToken.__table__)
_BY_HASH = select(_TOKENS.c.id, _TOKENS.c.name, _TOKENS.c.role, _TOKENS.c.tenant_id).where(
    _TOKENS.c.token_hash == bindparam("hash"), _TOKENS.c.revoked_at.is_(None)
)
"""Built once: every API request runs it, and building it cost more than running it."""


def add_token(
    session: Session,
    name: str,
    prefix: str,
    token_hash: str,
    role: str,
    tenant_id: int | None,
    created_at: datetime,
    created_by: str,
) -> int:
    """Store a new token; returns its id."""
    row = ApiToken(
        name=name,
        prefix=prefix,
        token_hash=token_hash,
        role=role,
        tenant_id=tenant_id,
        created_at=created_at,
        created_by=created_by,
        revoked_at=None,
    )
    session.add(row)
    session.flush()
    return row.id


def live_token(session: Session, token_hash: str) -> Row[*tuple[Any, ...]] | None:
    """Id, name, role and tenant id of the unrevoked token with this hash."""
    return session.connection().execute(_BY_HASH, {"hash": token_hash}).one_or_none()


def tokens_with_tenants(session: Session) -> Sequence[Row[ApiToken, str]]:
    """Every token with its tenant's name (``None`` for an unscoped one), oldest first."""
    return session.execute(
        select(ApiToken, Tenant.name).outerjoin(Tenant, Tenant.id == ApiToken.tenant_id).order_by(ApiToken.id)
    ).all()


def token_revoked_at(session: Session, token_id: int) -> Row[datetime | None] | None:
    """A one-column row holding when the token was revoked (``None`` inside when it is live); ``None`` for no token."""
    return session.execute(select(ApiToken.revoked_at).where(ApiToken.id == token_id)).one_or_none()


def revoke_token(session: Session, token_id: int, now: datetime) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(revoked_at=now))


# ---------------------------------------------------------------------------------------------------------------
# Escalation: nodes past their state's time limit, and their escalation events.

ESCALATED = "escalated"


def _overdue(now: datetime) -> ColumnElement[bool]:
    """SQL for "past its state's time limit", one term per timed state, so the state index does the work."""
    terms = [
        and_(Node.state == state.value, Node.state_since <= now - policy.time_limit)
        for state, policy in STATE_POLICIES.items()
        if policy.time_limit is not None
    ]
    return or_(*terms) if terms else false()


def _escalation_of_this_stay() -> Select[Any]:
    """Escalation events written during the node's current stay in its state.

    An escalation counts for the current stay when it names the same state, was written no earlier than the node
    entered it, and no transition came after it (which also covers leaving and re-entering at the same instant).
    """
    later = aliased(NodeEvent)
    return select(NodeEvent.at).where(
        NodeEvent.node_id == Node.id,
        NodeEvent.kind == ESCALATED,
        NodeEvent.from_state == Node.state,
        NodeEvent.at >= Node.state_since,
        ~select(later.id)
        .where(later.node_id == NodeEvent.node_id, later.kind == "transition", later.id > NodeEvent.id)
        .exists(),
    )


def _stuck_query(now: datetime) -> Select[*tuple[Any, ...]]:
    escalated_at = _escalation_of_this_stay().with_only_columns(func.max(NodeEvent.at)).scalar_subquery()
    return (
        select(
            Node.id,
            Node.hostname,
            Node.serial,
            Node.state,
            Node.state_since,
            Node.cluster_id,
            Cluster.name.label("cluster"),
            escalated_at.label("escalated_at"),
        )
        .join(Cluster, Cluster.id == Node.cluster_id)
        .where(_overdue(now))
    )


def stuck_nodes(session: Session, actor: Actor, now: datetime, cluster: str | None) -> Sequence[Row[*tuple[Any, ...]]]:
    """Nodes the SQL filter finds past their limit (what the caller may see, optionally in one cluster), by id, with
    when their current stay was escalated."""
    query = _stuck_query(now)
    if cluster:
        query = query.where(Cluster.name == cluster)
    visibility = tenant_visibility(actor, now)
    if visibility is not None:
        query = query.where(visibility)
    return session.execute(query.order_by(Node.id)).all()


def unescalated_batch(session: Session, now: datetime, after: str, size: int, lock: bool) -> list[Any]:
    """The next ``size`` overdue nodes after ``after`` not yet escalated in this stay.

    With ``lock`` on PostgreSQL the rows are locked, skipping any another runner holds.
    """
    query = _stuck_query(now).where(Node.id > after, ~_escalation_of_this_stay().exists()).order_by(Node.id).limit(size)
    if lock and session.get_bind().dialect.name == "postgresql":
        # Another runner holding a node is escalating it (or a transition is moving it): skip rather than wait.
        query = query.with_for_update(of=Node, skip_locked=True)
    return list(session.execute(query).all())


def still_due(session: Session, now: datetime, ids: list[str]) -> set[str]:
    """Re-read the locked rows in a fresh statement: a runner that committed just before we locked is visible now."""
    query = select(Node.id).where(Node.id.in_(ids), _overdue(now), ~_escalation_of_this_stay().exists())
    return set(session.execute(query).scalars())


# ---------------------------------------------------------------------------------------------------------------
# Reading nodes: filtered pages, one node's detail, the fleet summary.

SORT_COLUMNS = {
    "id": Node.id,
    "hostname": Node.hostname,
    "serial": Node.serial,
    "state": Node.state,
    "state_since": Node.state_since,
    "created_at": Node.created_at,
    "updated_at": Node.updated_at,
}
"""The columns a node page may be sorted by, by name."""


def _label_exists(key: str, value: str | None) -> Any:
    clause = select(NodeLabel.node_id).where(NodeLabel.node_id == Node.id, NodeLabel.key == key)
    if value is not None:
        clause = clause.where(NodeLabel.value == value)
    return clause.exists()


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


def _apply_filter(
    query: Select[Any],
    states: tuple[str, ...],
    cluster: str | None,
    supplier: str | None,
    sku: str | None,
    rack: str | None,
    nvlink_domain: str | None,
    selector: list[tuple[str, str, str | None]],
    actor: Actor,
    now: datetime,
) -> Select[Any]:
    if states:
        query = query.where(Node.state.in_(states))
    # Filter on the foreign keys through scalar subqueries rather than on the joined names, so the planner can walk
    # the (cluster_id, state, id) index in order instead of joining first.
    if cluster:
        query = query.where(Node.cluster_id == select(Cluster.id).where(Cluster.name == cluster).scalar_subquery())
    if supplier:
        query = query.where(Node.supplier_id == select(Supplier.id).where(Supplier.name == supplier).scalar_subquery())
    if sku:
        query = query.where(Node.sku_id == select(Sku.id).where(Sku.name == sku).scalar_subquery())
    if rack:
        query = query.where(Rack.name == rack)
    if nvlink_domain:
        query = query.where(NvlinkDomain.name == nvlink_domain)
    for key, op, value in selector:
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


def node_page(
    session: Session,
    actor: Actor,
    now: datetime,
    *,
    states: tuple[str, ...],
    cluster: str | None,
    supplier: str | None,
    sku: str | None,
    rack: str | None,
    nvlink_domain: str | None,
    selector: list[tuple[str, str, str | None]],
    sort_key: str,
    descending: bool,
    after: tuple[Any, str] | None,
    limit: int,
) -> Sequence[Row[*tuple[Any, ...]]]:
    """Up to ``limit`` node rows matching the filter in keyset order of ``sort_key`` then id, after the row whose
    sort value and id are ``after``. ``selector`` is a parsed label selector: (key, op, value) terms, all of which
    must hold."""
    column = SORT_COLUMNS[sort_key]
    query = _apply_filter(_base_query(), states, cluster, supplier, sku, rack, nvlink_domain, selector, actor, now)
    if after is not None:
        value, last_id = after
        if sort_key == "id":
            query = query.where(Node.id < last_id if descending else Node.id > last_id)
        elif descending:
            query = query.where(or_(column < value, and_(column == value, Node.id < last_id)))
        else:
            query = query.where(or_(column > value, and_(column == value, Node.id > last_id)))
    order: list[Any] = [column.desc(), Node.id.desc()] if descending else [column.asc(), Node.id.asc()]
    if sort_key == "id":
        order = order[:1]
    return session.execute(query.order_by(*order).limit(limit)).all()


def node_row(session: Session, node_id: str) -> Row[*tuple[Any, ...]]:
    """One node as a page row."""
    return session.execute(_base_query().where(Node.id == node_id)).one()


def gpu_devices(session: Session, node_id: str) -> Sequence[Row[int, str | None, str | None, str | None]]:
    return session.execute(
        select(Gpu.idx, Gpu.serial, Gpu.uuid, Gpu.pci_bus_id).where(Gpu.node_id == node_id).order_by(Gpu.idx)
    ).all()


def node_allocations(session: Session, node_id: str) -> Sequence[Row[str | None, datetime, datetime | None, str]]:
    """The node's allocations, latest start first, with their tenant's name."""
    return session.execute(
        select(Allocation.project, Allocation.starts_at, Allocation.ends_at, Tenant.name.label("tenant"))
        .join(Tenant, Tenant.id == Allocation.tenant_id)
        .where(Allocation.node_id == node_id)
        .order_by(Allocation.starts_at.desc())
    ).all()


def node_events(session: Session, node_id: str, limit: int) -> Sequence[Row[NodeEvent, str]]:
    """The node's latest ``limit`` events, newest first, with the name of the cluster each happened in."""
    event_cluster = aliased(Cluster)
    return session.execute(
        select(NodeEvent, event_cluster.name.label("cluster"))
        .outerjoin(event_cluster, event_cluster.id == NodeEvent.cluster_id)
        .where(NodeEvent.node_id == node_id)
        .order_by(NodeEvent.id.desc())
        .limit(limit)
    ).all()


def summary_groups(session: Session, actor: Actor, now: datetime) -> Sequence[Row[str, str, str, str, int, int]]:
    """Node count and GPU sum per state x cluster x supplier x SKU, over what the caller may see."""
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
    return session.execute(query).all()


# ---------------------------------------------------------------------------------------------------------------
# Inventory import: the bulk reads a plan is checked against, and the bulk writes that apply it.


def ids_by_name(session: Session, model: type[Any]) -> dict[str, int]:
    """Name -> id for every row of a named reference table (suppliers, clusters, SKUs, tenants, ...)."""
    return dict(session.execute(select(model.name, model.id)).all())


def names_by_id(session: Session, model: type[Any]) -> dict[int, str]:
    return dict(session.execute(select(model.id, model.name)).all())


def gpus_per_sku(session: Session) -> dict[int, int]:
    return dict(session.execute(select(Sku.id, Sku.gpus_per_node)).all())


def place_ids(session: Session, model: type[Any]) -> dict[tuple[int, str], int]:
    """(cluster id, name) -> id for every rack, NVLink domain or switch."""
    return {(c, n): i for i, c, n in session.execute(select(model.id, model.cluster_id, model.name))}


def nodes_for_import(session: Session) -> Result[*tuple[Any, ...]]:
    """Every node's identity, placement, state, labels and attributes, streamed in the order of ``_Existing``."""
    columns = (
        Node.id,
        Node.supplier_id,
        Node.serial,
        Node.hostname,
        Node.provider_id,
        Node.bmc_address,
        Node.sku_id,
        Node.cluster_id,
        Node.rack_id,
        Node.nvlink_domain_id,
        Node.switch_id,
        Node.state,
        Node.labels,
        Node.attributes,
    )
    return session.execute(select(*columns))


def gpu_serials(session: Session) -> Result[str, str | None]:
    """(node id, serial) of every GPU, by node then index."""
    return session.execute(select(Gpu.node_id, Gpu.serial).order_by(Gpu.node_id, Gpu.idx))


def active_tenants(session: Session, now: datetime) -> Sequence[Row[str, int]]:
    """(node id, tenant id) of every allocation in force at ``now``."""
    return session.execute(
        select(Allocation.node_id, Allocation.tenant_id).where(
            Allocation.starts_at <= now, or_(Allocation.ends_at.is_(None), Allocation.ends_at > now)
        )
    ).all()


def create_places(
    session: Session, model: type[Any], pending: set[tuple[int, str]], table: dict[tuple[int, str], int]
) -> None:
    """Insert the (cluster id, name) racks, domains or switches in ``pending`` and add their ids to ``table``."""
    if not pending:
        return
    session.execute(insert(model), [{"cluster_id": c, "name": n} for c, n in sorted(pending)])
    clusters = {c for c, _ in pending}
    for i, c, n in session.execute(
        select(model.id, model.cluster_id, model.name).where(model.cluster_id.in_(clusters))
    ):
        table[(c, n)] = i


def create_tenants(session: Session, names: set[str]) -> dict[str, int]:
    """Insert tenants by name; returns name -> id for them."""
    session.execute(insert(Tenant), [{"name": n} for n in sorted(names)])
    return dict(session.execute(select(Tenant.name, Tenant.id).where(Tenant.name.in_(names))).all())


def insert_nodes(session: Session, rows: list[dict[str, Any]]) -> None:
    session.execute(insert(Node), rows)


def update_nodes(session: Session, updates: list[dict[str, Any]]) -> None:
    """Apply per-node column updates (``b_id`` names the node), bumping each node's version."""
    # Updates differ in which columns they set, so group by column set for executemany.
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in updates:
        by_shape.setdefault(tuple(sorted(values)), []).append(values)
    for shape, rows in by_shape.items():
        columns: dict[str, Any] = {c: bindparam(f"v_{c}") for c in shape if c != "b_id"}
        stmt = update(Node).where(Node.id == bindparam("b_id")).values(version=Node.version + 1, **columns)
        params = [{("b_id" if k == "b_id" else f"v_{k}"): v for k, v in r.items()} for r in rows]
        session.connection().execute(stmt, params)


def delete_gpus(session: Session, node_ids: list[str]) -> None:
    session.execute(delete(Gpu).where(Gpu.node_id.in_(node_ids)))


def insert_gpus(session: Session, rows: list[dict[str, Any]]) -> None:
    session.execute(insert(Gpu), rows)


def delete_labels(session: Session, node_ids: list[str]) -> None:
    session.execute(delete(NodeLabel).where(NodeLabel.node_id.in_(node_ids)))


def insert_labels(session: Session, rows: list[dict[str, Any]]) -> None:
    session.execute(insert(NodeLabel), rows)


def end_active_allocations(session: Session, node_ids: list[str], now: datetime) -> None:
    """End, at ``now``, every allocation of these nodes in force at ``now``."""
    session.execute(
        update(Allocation)
        .where(
            Allocation.node_id.in_(node_ids),
            Allocation.starts_at <= now,
            or_(Allocation.ends_at.is_(None), Allocation.ends_at > now),
        )
        .values(ends_at=now)
    )


def insert_allocations(session: Session, rows: list[dict[str, Any]]) -> None:
    session.execute(insert(Allocation), rows)


# ---------------------------------------------------------------------------------------------------------------
# Reference data: upserts by key, listings and row counts.


def find_by_key(session: Session, model: type[Any], key: dict[str, Any]) -> Any | None:
    """The row of ``model`` with these key column values, if there is one."""
    return session.execute(select(model).filter_by(**key)).scalar_one_or_none()


def add_row(session: Session, row: Any) -> None:
    """Add a new entity and flush, so its generated id is known."""
    session.add(row)
    session.flush()


def partition_id(session: Session, cluster_id: int | None, name: str) -> int | None:
    return session.execute(
        select(IbPartition.id).where(IbPartition.cluster_id == cluster_id, IbPartition.name == name)
    ).scalar_one_or_none()


def reference_rows(session: Session, model: type[Any]) -> list[dict[str, Any]]:
    """Every row of ``model`` by id, as a dict of all its columns."""
    return [
        {c.name: getattr(obj, c.name) for c in model.__table__.columns}
        for obj in session.execute(select(model).order_by(model.id)).scalars()
    ]


def count_rows(session: Session, model: type[Any]) -> int:
    return session.execute(select(func.count()).select_from(model)).scalar_one()
