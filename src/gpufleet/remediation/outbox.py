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

from gpufleet.adapters.notifiers.webhook import DeliveryError, WebhookNotifier
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput, NotFound
from gpufleet.remediation import store

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
    session: UnitOfWork,
    key: str,
    topic: str,
    payload: dict[str, Any],
    now: datetime,
    supplier_id: int | None = None,
    ticket_id: int | None = None,
) -> int | None:
    """Queue a message; a key already queued is the same message, so nothing is added (``None``)."""
    if store.message_queued(session, key):
        return None
    body = dict(payload)
    if supplier_id is not None:
        body.setdefault("supplier_id", supplier_id)
    return store.insert_message(
        session,
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
        channels = {r.name: (r.url, r.supplier_id) for r in store.enabled_channels(session)}
        batch: list[tuple[int, str, str, dict[str, Any], str, int, int | None]] = []
        for message in store.due_messages(session, (PENDING, UNROUTED), now, limit):
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
                store.set_message(session, message_id, status=SENT, sent_at=now, last_error=None)
                if ticket_id is not None:
                    store.ticket_sent(session, ticket_id, now)
                report.sent += 1
            elif retryable and attempts < MAX_ATTEMPTS:
                store.set_message(
                    session, message_id, status=PENDING, last_error=error, next_attempt_at=now + _backoff(attempts)
                )
                report.retrying += 1
                report.errors.append(error)
            else:
                store.set_message(session, message_id, status=DEAD, last_error=error)
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
            supplier_id = store.supplier_id_named(session, supplier.strip())
            if supplier_id is None:
                raise NotFound(f"no supplier named '{supplier}'")
        row = store.channel(session, name)
        if row is None:
            row = store.add_channel(session, name=name, kind="webhook")
        row.url, row.supplier_id, row.enabled = url, supplier_id, enabled
        row.updated_at, row.updated_by = db.clock.now(), actor.name
        # Messages parked for want of a route are worth trying again now.
        store.reschedule_messages(session, UNROUTED, db.clock.now())
        return {"name": name, "kind": "webhook", "url": url, "supplier": supplier, "enabled": enabled}


def list_channels(db: Database, actor: Actor) -> list[dict[str, Any]]:
    if actor.tenant_scoped:
        raise Forbidden("notification channels are fleet data")
    with db.reader() as session:
        names = store.supplier_names(session)
        return [
            {
                "name": r.name,
                "kind": r.kind,
                "url": r.url,
                "supplier": names.get(r.supplier_id) if r.supplier_id is not None else None,
                "enabled": r.enabled,
            }
            for r in store.channels(session)
        ]


def outbox_summary(db: Database, actor: Actor) -> dict[str, Any]:
    if actor.tenant_scoped:
        raise Forbidden("the outbox is fleet data")
    with db.reader() as session:
        counts = store.message_counts(session)
        oldest = store.oldest_message(session, (PENDING, UNROUTED))
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
            for m in store.recent_messages(session, 20)
        ]
    return {
        "by_status": {s: int(counts.get(s, 0)) for s in (PENDING, UNROUTED, SENT, DEAD)},
        "oldest_waiting": oldest.isoformat() if oldest else None,
        "recent": recent,
    }
