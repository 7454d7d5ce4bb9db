"""Remediation over HTTP: the health policy and its overrides, figures, breakers, tickets, channels, outbox, reboots.

The immediate reaction to ingested health events is attached where the app is assembled (``api.app.create_app``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gpufleet.api.auth import Operator, Viewer
from gpufleet.api.deps import Db
from gpufleet.api.responses import ValueJSONResponse
from gpufleet.api.schemas import AUTH, problems
from gpufleet.api.schemas.remediation import (
    BreakerOut,
    ChannelOut,
    DeliveryOut,
    FiguresOut,
    HealthPolicyOut,
    OutboxOut,
    OverrideOut,
    PassOut,
    RebootsOut,
    TicketOut,
)
from gpufleet.remediation.outbox import deliver_due, list_channels, outbox_summary, set_channel
from gpufleet.remediation.policy import list_overrides, revoke_override, set_override, show_policy
from gpufleet.remediation.react import run_once
from gpufleet.remediation.reboots import list_reboots
from gpufleet.remediation.safety import breakers, reset_breaker, trip_breaker
from gpufleet.remediation.tickets import list_tickets, set_ticket_status
from gpufleet.reports.remediation import remediation_figures

router = APIRouter(prefix="/remediation", tags=["remediation"], responses=AUTH)
NO_CLUSTER = (404, "No such cluster")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OverrideIn(_In):
    key: str = Field(
        min_length=1,
        max_length=120,
        description="code:<code> (e.g. code:xid:79) or setting:<name> (e.g. setting:dry_run).",
    )
    value: Any = Field(description="For a code, the rule fields to change (action, kind, owner, fatal, drain).")
    reason: str = Field(min_length=1, max_length=2000)
    cluster: str | None = Field(default=None, max_length=100, description="Default: the whole fleet.")
    pool: str | None = Field(default=None, max_length=100, description="A pool (node label 'pool') of the cluster.")


class ReasonIn(_In):
    reason: str = Field(min_length=1, max_length=2000)


class TicketStatusIn(_In):
    status: str = Field(min_length=1, max_length=20, description="open, sent, acknowledged, resolved or closed.")
    reason: str = Field(min_length=1, max_length=2000)
    external_ref: str | None = Field(default=None, max_length=200, description="The supplier's own reference.")


class ChannelIn(_In):
    url: str = Field(min_length=1, max_length=1000)
    supplier: str | None = Field(default=None, max_length=100, description="This supplier's tickets go here.")
    enabled: bool = True


@router.get(
    "/policy",
    response_model=HealthPolicyOut,
    summary="The health policy in force for the fleet, a cluster or a pool",
    responses=problems(NO_CLUSTER, 422),
)
def get_policy(
    actor: Viewer,
    db: Db,
    cluster: Annotated[str | None, Query(max_length=100)] = None,
    pool: Annotated[str | None, Query(max_length=100)] = None,
) -> ValueJSONResponse:
    return ValueJSONResponse(show_policy(db, actor, cluster, pool))


@router.get(
    "/policy/overrides",
    response_model=list[OverrideOut],
    summary="Policy overrides in force (or all, with revoked=true)",
    responses=problems(NO_CLUSTER, 422),
)
def get_overrides(
    actor: Viewer,
    db: Db,
    cluster: Annotated[str | None, Query(max_length=100)] = None,
    revoked: bool = False,
) -> ValueJSONResponse:
    return ValueJSONResponse([o.as_dict() for o in list_overrides(db, actor, cluster, revoked)])


@router.post(
    "/policy/overrides",
    status_code=201,
    response_model=OverrideOut,
    summary="Override a code's rule or a setting, with a reason",
    responses=problems(NO_CLUSTER, 413, 422),
)
def post_override(body: OverrideIn, actor: Operator, db: Db) -> ValueJSONResponse:
    view = set_override(db, actor, body.key, body.value, body.reason, body.cluster, body.pool)
    return ValueJSONResponse(view.as_dict(), status_code=201)


@router.post(
    "/policy/overrides/{override_id}/revoke",
    response_model=OverrideOut,
    summary="Take an override back (kept on record)",
    responses=problems((404, "No such override"), 413, 422),
)
def post_revoke(override_id: int, body: ReasonIn, actor: Operator, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(revoke_override(db, actor, override_id, body.reason).as_dict())


@router.get(
    "/figures",
    response_model=FiguresOut,
    summary="MTTR (software/hardware, p50/p90), automation rate by supplier and cluster, reboots",
    responses=problems(422),
)
def get_figures(
    actor: Viewer,
    db: Db,
    days: Annotated[int | None, Query(ge=1, le=3650, description="Cases of the last N days.")] = None,
) -> ValueJSONResponse:
    since = db.clock.now() - timedelta(days=days) if days else None
    return ValueJSONResponse(remediation_figures(db, actor, since))


@router.get(
    "/breakers",
    response_model=list[BreakerOut],
    summary="Every cluster's circuit breaker, with why it tripped and what it holds",
)
def get_breakers(actor: Viewer, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse([b.as_dict() for b in breakers(db, actor)])


@router.post(
    "/breakers/{cluster}/reset",
    response_model=BreakerOut,
    summary="Close a cluster's breaker, with a reason: held cases proceed",
    responses=problems(NO_CLUSTER, 413, 422),
)
def post_reset(cluster: str, body: ReasonIn, actor: Operator, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(reset_breaker(db, actor, cluster, body.reason).as_dict())


@router.post(
    "/breakers/{cluster}/trip",
    response_model=BreakerOut,
    summary="Stop automation taking nodes out in a cluster, with a reason",
    responses=problems(NO_CLUSTER, 413, 422),
)
def post_trip(cluster: str, body: ReasonIn, actor: Operator, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(trip_breaker(db, actor, cluster, body.reason).as_dict())


@router.get(
    "/tickets",
    response_model=list[TicketOut],
    summary="Supplier tickets, one per hardware unit, with the evidence",
    responses=problems(422),
)
def get_tickets(
    actor: Viewer,
    db: Db,
    status: Annotated[str | None, Query(max_length=20)] = None,
    supplier: Annotated[str | None, Query(max_length=100)] = None,
) -> ValueJSONResponse:
    return ValueJSONResponse(list_tickets(db, actor, status, supplier))


@router.post(
    "/tickets/{ticket_id}/status",
    response_model=TicketOut,
    summary="Record what the supplier said about a ticket",
    responses=problems((404, "No such ticket"), 413, 422),
)
def post_ticket_status(ticket_id: int, body: TicketStatusIn, actor: Operator, db: Db) -> ValueJSONResponse:
    view = set_ticket_status(db, actor, ticket_id, body.status, body.reason, body.external_ref)
    return ValueJSONResponse(view)


@router.get("/channels", response_model=list[ChannelOut], summary="Notification channels (webhooks)")
def get_channels(actor: Viewer, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(list_channels(db, actor))


@router.put(
    "/channels/{name}",
    response_model=ChannelOut,
    summary="Add or change a webhook channel",
    responses=problems((404, "No such supplier"), 413, 422),
)
def put_channel(name: str, body: ChannelIn, actor: Operator, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(set_channel(db, actor, name, body.url, body.supplier, body.enabled))


@router.get(
    "/outbox", response_model=OutboxOut, summary="Messages waiting to be delivered (and why), and the latest sent"
)
def get_outbox(actor: Viewer, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(outbox_summary(db, actor))


@router.post("/outbox/deliver", response_model=DeliveryOut, summary="Deliver what is due now")
async def post_deliver(actor: Operator, db: Db) -> ValueJSONResponse:
    del actor  # checked by the dependency: delivering needs the operator role
    report = await run_in_threadpool(deliver_due, db)
    return ValueJSONResponse(report.as_dict())


@router.get(
    "/reboots",
    response_model=RebootsOut,
    summary="Reboots asked for or seen: went down, came back, how long; the share returned",
    responses=problems(422),
)
def get_reboots(
    actor: Viewer,
    db: Db,
    cluster: Annotated[str | None, Query(max_length=100)] = None,
    outcome: Annotated[str | None, Query(max_length=20)] = None,
) -> ValueJSONResponse:
    return ValueJSONResponse(list_reboots(db, actor, cluster, outcome))


@router.post("/run", response_model=PassOut, summary="One remediation pass now (the controller also runs on its own)")
def post_run(actor: Operator, db: Db) -> ValueJSONResponse:
    return ValueJSONResponse(run_once(db, actor))
