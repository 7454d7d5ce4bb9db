"""The durable outbox: messages are written in the transaction that caused them and delivered later, with retries.

A message stays until its receiver took it, so a webhook that is down for an hour loses nothing: delivery backs
off and tries again. Each message has an idempotency key the receiver sees on every attempt. Delivery claims
messages (``SKIP LOCKED`` on PostgreSQL) and pushes their next attempt forward before sending, so several
deliverers never send one message at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from gpufleet.adapters.db.models import NotificationChannel, OutboxMessage, Supplier, Ticket
from gpufleet.adapters.notifiers.webhook import DeliveryError, WebhookNotifier
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound

PENDING = "pending"
SENT = "sent"
UNROUTED = "unrouted"
DEAD = "dead"
DEFAULT_CHANNEL = "default"
CLAIM = timedelta(minutes=2)
FIRST_RETRY = timedelta(seconds=10)
MAX_RETRY = timedelta(hours=1)
MAX_ATTEMPTS = 200


class Sender(Protocol):
    def send(self, url: str, payload: dict[str, Any], key: str, topic: str) -> None: ...


def enqueue(
    session: Session,
    key: str,
    topic: str,
    payload: dict[str, Any],
    now: datetime,
    supplier_id: int | None = None,
    ticket_id: int | None = None,
) -> int | None:
    """Queue a message; a key already queued is the same message, so nothing is added (``None``)."""
    if session.execute(select(OutboxMessage.id).where(OutboxMessage.key == key)).first() is not None:
        return None
    body = dict(payload)
    if supplier_id is not None:
        body.setdefault("supplier_id", supplier_id)
    result = session.execute(
        insert(OutboxMessage)
        .returning(OutboxMessage.id)
        .values(
            key=key,
            channel=None,
            topic=topic,
            payload=body,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            ticket_id=ticket_id,
        )
    )
    return int(result.scalar_one())


def _route(channels: dict[str, tuple[str, int | None]], payload: dict[str, Any]) -> tuple[str, str] | None:
    """The channel for a message: its supplier's own, else the default one."""
    supplier = payload.get("supplier_id")
    for name, (url, supplier_id) in sorted(channels.items()):
        if supplier is not None and supplier_id == supplier:
            return name, url
    if DEFAULT_CHANNEL in channels:
        return DEFAULT_CHANNEL, channels[DEFAULT_CHANNEL][0]
    return None


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    unrouted: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retrying": self.retrying,
            "unrouted": self.unrouted,
            "dead": self.dead,
            "errors": self.errors[:20],
        }


def _backoff(attempts: int) -> timedelta:
    seconds = FIRST_RETRY.total_seconds() * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(seconds, MAX_RETRY.total_seconds()))


def deliver_due(db: Database, sender: Sender | None = None, limit: int = 100) -> DeliveryReport:
    """Send what is due, once each; failures are retried later with backoff."""
    now = db.clock.now()
    report = DeliveryReport()
    with db.transaction() as session:
        channels = {
            r.name: (r.url, r.supplier_id)
            for r in session.execute(
                select(NotificationChannel.name, NotificationChannel.url, NotificationChannel.supplier_id).where(
                    NotificationChannel.enabled.is_(True)
                )
            )
        }
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.status.in_((PENDING, UNROUTED)), OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        if db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        batch: list[tuple[int, str, str, dict[str, Any], str, int, int | None]] = []
        for message in session.scalars(query):
            route = _route(channels, message.payload)
            if route is None:
                message.status = UNROUTED
                message.last_error = (
                    "no notification channel for this message; add one with gpufleet remediation channel"
                )
                message.next_attempt_at = now + MAX_RETRY
                report.unrouted += 1
                continue
            message.channel = route[0]
            message.attempts += 1
            message.next_attempt_at = now + CLAIM
            batch.append(
                (
                    message.id,
                    route[1],
                    message.key,
                    dict(message.payload),
                    message.topic,
                    message.attempts,
                    message.ticket_id,
                )
            )
    own = sender is None
    client = sender or WebhookNotifier()
    try:
        outcomes: list[tuple[int, str | None, bool, int, int | None]] = []
        for message_id, url, key, payload, topic, attempts, ticket_id in batch:
            try:
                client.send(url, payload, key, topic)
                outcomes.append((message_id, None, True, attempts, ticket_id))
            except DeliveryError as exc:
                outcomes.append((message_id, str(exc), exc.retryable, attempts, ticket_id))
    finally:
        if own and isinstance(client, WebhookNotifier):
            client.close()
    with db.transaction() as session:
        for message_id, error, retryable, attempts, ticket_id in outcomes:
            if error is None:
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == message_id)
                    .values(status=SENT, sent_at=now, last_error=None)
                )
                if ticket_id is not None:
                    session.execute(
                        update(Ticket)
                        .where(Ticket.id == ticket_id, Ticket.status == "open")
                        .values(status="sent", updated_at=now)
                    )
                report.sent += 1
            elif retryable and attempts < MAX_ATTEMPTS:
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == message_id)
                    .values(status=PENDING, last_error=error, next_attempt_at=now + _backoff(attempts))
                )
                report.retrying += 1
                report.errors.append(error)
            else:
                session.execute(
                    update(OutboxMessage).where(OutboxMessage.id == message_id).values(status=DEAD, last_error=error)
                )
                report.dead += 1
                report.errors.append(error)
    return report


def _admin(actor: Actor) -> None:
    if actor.role < Role.OPERATOR or actor.tenant_scoped:
        raise Forbidden("notification channels need the operator role and a token not scoped to a tenant")


def set_channel(
    db: Database, actor: Actor, name: str, url: str, supplier: str | None = None, enabled: bool = True
) -> dict[str, Any]:
    """Add or change a webhook channel; ``supplier`` makes it the route for that supplier's tickets."""
    _admin(actor)
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("a channel name of 1 to 100 characters is required", field="name")
    if not (url.startswith("http://") or url.startswith("https://")) or len(url) > 1000:
        raise InvalidInput("expected an http(s) URL of at most 1000 characters", field="url")
    with db.transaction() as session:
        supplier_id = None
        if supplier:
            supplier_id = session.execute(
                select(Supplier.id).where(Supplier.name == supplier.strip())
            ).scalar_one_or_none()
            if supplier_id is None:
                raise NotFound(f"no supplier named '{supplier}'")
        row = session.get(NotificationChannel, name)
        if row is None:
            row = NotificationChannel(name=name, kind="webhook")
            session.add(row)
        row.url, row.supplier_id, row.enabled = url, supplier_id, enabled
        row.updated_at, row.updated_by = db.clock.now(), actor.name
        # Messages parked for want of a route are worth trying again now.
        session.execute(
            update(OutboxMessage).where(OutboxMessage.status == UNROUTED).values(next_attempt_at=db.clock.now())
        )
        return {"name": name, "kind": "webhook", "url": url, "supplier": supplier, "enabled": enabled}


def list_channels(db: Database, actor: Actor) -> list[dict[str, Any]]:
    if actor.tenant_scoped:
        raise Forbidden("notification channels are fleet data")
    with db.reader() as session:
        names = dict(session.execute(select(Supplier.id, Supplier.name)).all())
        return [
            {
                "name": r.name,
                "kind": r.kind,
                "url": r.url,
                "supplier": names.get(r.supplier_id) if r.supplier_id is not None else None,
                "enabled": r.enabled,
            }
            for r in session.scalars(select(NotificationChannel).order_by(NotificationChannel.name))
        ]


def outbox_summary(db: Database, actor: Actor) -> dict[str, Any]:
    if actor.tenant_scoped:
        raise Forbidden("the outbox is fleet data")
    with db.reader() as session:
        counts = dict(session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
        oldest = session.execute(
            select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status.in_((PENDING, UNROUTED)))
        ).scalar_one_or_none()
        recent = [
            {
                "id": m.id,
                "topic": m.topic,
                "status": m.status,
                "channel": m.channel,
                "attempts": m.attempts,
                "last_error": m.last_error,
                "created_at": m.created_at.isoformat(),
                "sent_at": m.sent_at.isoformat() if m.sent_at else None,
            }
            for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(20))
        ]
    return {
        "by_status": {s: int(counts.get(s, 0)) for s in (PENDING, UNROUTED, SENT, DEAD)},
        "oldest_waiting": oldest.isoformat() if oldest else None,
        "recent": recent,
    }
