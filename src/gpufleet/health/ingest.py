"""Recording health telemetry: kernel Xid lines, nvidia-smi XML, DCGM diagnostics, Alertmanager alerts, JSON events.

Every source comes through ``ingest``: parse (bad lines and documents become problems with their position, the rest
is read), match to nodes and GPUs (``health_match``), stamp, deduplicate and bulk-insert into ``health_events`` in one
transaction, then tell whoever registered with ``on_ingested`` which events are new, after the commit.

Rules for what arrives:

- **Duplicates.** Each event has a fingerprint: for an Alertmanager alert its fingerprint, ``startsAt`` and status;
  for a JSON event its own ``fingerprint`` when given; for a kernel line with only an uptime stamp the node, uptime,
  GPU and code; otherwise a hash of source, node as named, code, GPU as named, status and observation time. A
  delivery whose fingerprint is already stored inserts nothing and is counted as a duplicate, so re-sent files,
  Alertmanager's repeat_interval and an agent's retries never act twice. A report without a time of its own (DCGM)
  is stamped on arrival; sent with a ``delivery`` id (the agent does) its retries are duplicates too.
- **Time.** An event more than 5 minutes ahead of the server's clock (``future``) or older than 30 days (``stale``)
  is stored, flagged in ``data.flag`` and counted, but marked processed on arrival so remediation never acts on it:
  a skewed clock or a replayed old log is evidence, not an incident.
- **Unmatched.** An event for a node or GPU the inventory does not know (or contradicts) is stored with no node,
  the reason in ``data.unmatched``, and marked processed; ``gpufleet events unmatched`` lists them and
  ``rematch`` re-reads them once the inventory is fixed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gpufleet.adapters.formats.alertmanager import parse_alertmanager
from gpufleet.adapters.formats.dcgm import parse_dcgm
from gpufleet.adapters.formats.health_json import parse_health_json
from gpufleet.adapters.formats.health_observation import MAX_TEXT_BYTES, Observation, Parsed, Problem
from gpufleet.adapters.formats.nvidia_smi import parse_nvidia_smi
from gpufleet.adapters.formats.xid import mentions_xid, parse_xid_log
from gpufleet.health.match import Inventory, Match
from gpufleet.health.requests import complete_request
from gpufleet.health.store import insert_events, insert_statements, save_learned
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Busy, Forbidden, InvalidInput

log = logging.getLogger("gpufleet.health")

FORMATS = ("xid", "nvidia-smi", "dcgm", "alertmanager", "json")
MAX_BYTES = MAX_TEXT_BYTES
FUTURE_SKEW = timedelta(minutes=5)
STALE_AGE = timedelta(days=30)
MAX_EVENTS = 500_000
FUTURE, STALE = "future", "stale"


@dataclass(frozen=True)
class EventFacts:
    """What a reaction reads of a new event to decide whether it needs a decision now."""

    id: int
    node_id: str
    code: str
    severity: str
    status: str
    gpu_index: int | None
    observed_at: datetime


class NewEvents(list[int]):
    """The ids of events just stored, with the facts of those still to be processed (matched to a node, not flagged).

    The ingest has these in hand; passing them on spares the reaction reading the same rows back under load. An id
    without facts was stored already processed (unmatched, from the future, stale).
    """

    def __init__(self, ids: Sequence[int] = (), facts: dict[int, EventFacts] | None = None) -> None:
        super().__init__(ids)
        self.facts: dict[int, EventFacts] = facts or {}


IngestedCallback = Callable[[Database, Sequence[int]], None]


def on_ingested(db: Database, callback: IngestedCallback) -> IngestedCallback:
    """Call ``callback(db, new_event_ids)`` after every ingest into ``db`` that stored new events, once committed.

    Registering the same callable twice keeps one registration. A callback that raises is logged and does not undo
    or fail the ingest: the events are stored, and the ``processed_at`` cursor lets the reaction catch up later.
    """
    if callback not in db.ingest_reactions:
        db.ingest_reactions.append(callback)
    return callback


def remove_ingested_callback(db: Database, callback: IngestedCallback) -> None:
    if callback in db.ingest_reactions:
        db.ingest_reactions.remove(callback)


def notify(db: Database, ids: Sequence[int]) -> None:
    """Run the callbacks attached to this database for events that became actionable (new, or matched again)."""
    for callback in list(db.ingest_reactions):
        try:
            callback(db, ids)
        except Exception:
            log.exception("a health-event callback failed; the events are stored and stay unprocessed")


@dataclass(frozen=True)
class Unmatched:
    line: int
    where: str
    subject: str
    reason: str
    event_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class HealthIngestReport:
    source: str
    format: str
    readings: int = 0
    """Lines, documents or alerts read, whether or not they showed a fault."""
    ignored: int = 0
    """Kernel log lines that are not Xid lines."""
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    future: int = 0
    stale: int = 0
    gpu_unresolved: int = 0
    gpus_learned: int = 0
    unmatched: list[Unmatched] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)
    facts: dict[int, EventFacts] = field(default_factory=dict)
    """Of the new events still to be processed, what a reaction needs to know (see ``NewEvents``)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary_line(self) -> str:
        text = f"{self.accepted} new event(s) from {self.source} ({self.format}); {self.duplicates} duplicate(s)"
        for count, what in (
            (len(self.unmatched), "unmatched (see `gpufleet events unmatched`)"),
            (self.future, "from the future, not acted on"),
            (self.stale, "older than 30 days, not acted on"),
            (len(self.problems), "unreadable line(s)/document(s)"),
        ):
            if count:
                text += f"; {count} {what}"
        return text

    def as_dict(self, max_items: int = 1000) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "readings": self.readings,
            "ignored_lines": self.ignored,
            "events": self.events,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "unmatched_count": len(self.unmatched),
            "future": self.future,
            "stale": self.stale,
            "gpu_unresolved": self.gpu_unresolved,
            "gpus_learned": self.gpus_learned,
            "problem_count": len(self.problems),
            "ok": self.ok,
            "summary": self.summary_line(),
            "problems": [p.as_dict() for p in self.problems[:max_items]],
            "unmatched": [u.as_dict() for u in self.unmatched[:max_items]],
            "event_ids": self.event_ids[:max_items],
        }


def detect_format(text: str) -> str:
    """A body's format from its start: XML, a DCGM report, an Alertmanager payload, JSON events or Xid lines."""
    head = text.lstrip()[:65536]
    if head.startswith("<"):
        return "nvidia-smi"
    if head.startswith(("{", "[")):
        if '"DCGM Diagnostic"' in head or '"DCGM GPU Diagnostic"' in head:
            return "dcgm"
        if '"alerts"' in head and ('"startsAt"' in head or '"groupKey"' in head):
            return "alertmanager"
        return "json"
    if any(mentions_xid(line) for line in text.splitlines()):
        return "xid"
    raise InvalidInput(
        "cannot tell the format: not nvidia-smi XML, JSON, or a kernel log with Xid lines; name it with --format",
        field="format",
    )


def parse(text: str, fmt: str, now: datetime, node: str | None) -> Parsed:
    if fmt == "xid":
        return parse_xid_log(text, now, node)
    if fmt == "nvidia-smi":
        return parse_nvidia_smi(text, node)
    if fmt == "dcgm":
        return parse_dcgm(text, node)
    if fmt == "alertmanager":
        return parse_alertmanager(text, node)
    if fmt == "json":
        return parse_health_json(text, node)
    raise InvalidInput(f"unknown format '{fmt}'; expected auto or one of {', '.join(FORMATS)}", field="format")


def _fingerprint(obs: Observation, observed: datetime, stamped: bool, delivery: str | None) -> str:
    if obs.key:
        basis = obs.key
    else:
        gpu = obs.gpu.describe() if obs.gpu else "-"
        when = f"delivery:{delivery}:{obs.where}" if stamped and delivery else observed.isoformat()
        basis = "|".join((obs.source, (obs.node or "").lower(), obs.code, gpu, obs.status, when))
    return hashlib.sha256(basis.encode()).hexdigest()


def _row(
    obs: Observation, match: Match, now: datetime, actor: Actor, source_name: str, delivery: str | None
) -> tuple[dict[str, Any], str | None]:
    stamped = obs.observed_at is None
    observed = now if obs.observed_at is None else obs.observed_at
    data: dict[str, Any] = {**obs.data, "where": obs.where, "line": obs.line, "from": source_name, "by": actor.name}
    if obs.gpu is not None:
        data["gpu_ref"] = obs.gpu.as_dict()
    if stamped:
        data["time"] = "received"
    if delivery:
        data["delivery"] = delivery
    flag = None
    if observed > now + FUTURE_SKEW:
        flag = FUTURE
    elif observed < now - STALE_AGE:
        flag = STALE
    if flag:
        data["flag"] = flag
    if match.reason:
        data["unmatched"] = match.reason
        data["node_ref"] = obs.node
    if match.gpu_unresolved:
        data["gpu_unresolved"] = True
    subject = (obs.node or "-") + (f" gpu {obs.gpu.describe()}" if obs.gpu is not None else "")
    row = {
        "fingerprint": _fingerprint(obs, observed, stamped, delivery),
        "source": obs.source,
        "code": obs.code[:80],
        "severity": obs.severity,
        "status": obs.status,
        "node_id": match.node_id,
        "gpu_index": match.gpu_index,
        "subject": subject[:255],
        "message": obs.message,
        "observed_at": observed,
        "received_at": now,
        "processed_at": now if flag or match.node_id is None else None,
        "case_id": None,
        "data": data,
    }
    return row, flag


def check_writer(actor: Actor) -> None:
    if actor.role < Role.OPERATOR:
        raise Forbidden("recording health events needs the operator role")
    if actor.tenant_scoped:
        raise Forbidden("a tenant-scoped token cannot record health events")


def read_inventory(session: UnitOfWork, parsed: Parsed, node: str | None) -> Inventory:
    """The nodes and GPUs ``parsed`` names; read before the write transaction, so readers do not queue behind it."""
    if len(parsed.observations) > MAX_EVENTS:
        raise InvalidInput(f"at most {MAX_EVENTS} events per request; split the input", field="body")
    refs = [o.node for o in parsed.observations if o.node]
    if node:
        refs.append(node)
    gpus = [o.gpu for o in parsed.observations if o.gpu is not None] + parsed.gpus
    return Inventory(session, refs, gpus)


@dataclass
class _Prepared:
    """An ingest worked out before its write transaction: only the statements run inside it."""

    report: HealthIngestReport
    rows: list[dict[str, Any]]
    matched: dict[str, tuple[Observation, Match]]
    statements: list[tuple[str, Any]]
    learned: list[dict[str, object]]


def prepare(
    parsed: Parsed,
    now: datetime,
    actor: Actor,
    source_name: str,
    inventory: Inventory,
    dialect: str,
    node: str | None = None,
    delivery: str | None = None,
    fmt: str | None = None,
) -> _Prepared:
    """Match, stamp, deduplicate within the body and encode the inserts, all outside the write transaction: under
    a burst the one SQLite writer's turn then holds only the statements."""
    report = HealthIngestReport(source=source_name, format=fmt or parsed.source, readings=parsed.readings)
    report.ignored, report.problems = parsed.ignored, list(parsed.problems)
    learned = inventory.learn_gpus(node, parsed.gpus) if parsed.gpus else []
    report.gpus_learned = len(learned)
    rows: list[dict[str, Any]] = []
    matched: dict[str, tuple[Observation, Match]] = {}
    for obs in parsed.observations:
        match = inventory.match(obs.node, obs.gpu)
        row, flag = _row(obs, match, now, actor, source_name, delivery)
        if row["fingerprint"] in matched:
            report.duplicates += 1
            continue
        matched[row["fingerprint"]] = (obs, match)
        rows.append(row)
        report.future += flag == FUTURE
        report.stale += flag == STALE
    report.events = len(parsed.observations)
    return _Prepared(report, rows, matched, insert_statements(rows, dialect), learned)


def store(session: UnitOfWork, prepared: _Prepared) -> dict[str, int]:
    """Run a prepared ingest's writes inside the caller's transaction; the new event ids by fingerprint."""
    save_learned(session, prepared.learned)
    return insert_events(session, prepared.statements)


def complete(prepared: _Prepared, stored: dict[str, int]) -> HealthIngestReport:
    """The report of a stored ingest, made after its commit: the one SQLite writer is not held for it."""
    report, rows = prepared.report, prepared.rows
    report.accepted = len(stored)
    report.duplicates += len(rows) - len(stored)
    for row in rows:
        new_id = stored.get(row["fingerprint"])
        obs, match = prepared.matched[row["fingerprint"]]
        if new_id is None:
            continue
        report.event_ids.append(new_id)
        if match.node_id is not None and row["processed_at"] is None:
            report.facts[new_id] = EventFacts(
                new_id, match.node_id, row["code"], row["severity"], row["status"], row["gpu_index"], row["observed_at"]
            )
        if match.node_id is None:
            report.unmatched.append(Unmatched(obs.line, obs.where, row["subject"], match.reason or "unknown", new_id))
        elif match.gpu_unresolved:
            report.gpu_unresolved += 1
    return report


INGEST_WAIT_S = 30.0
"""How long an ingest waits for its turn (``Database.ingest_turns``) before it is refused as busy (503, which the agent
retries)."""


def ingest(
    db: Database,
    text: str,
    fmt: str,
    actor: Actor,
    node: str | None = None,
    source_name: str = "api",
    delivery: str | None = None,
    request_id: int | None = None,
) -> HealthIngestReport:
    """Parse ``text`` as ``fmt`` ("auto" detects it) and store its events in one transaction; never raises for a bad
    line or document, only for a body that cannot be read at all (unknown format, too large). ``request_id`` names
    the agent request (a DCGM diagnostic) this body answers: it is closed in the same transaction."""
    check_writer(actor)
    if len(text) > MAX_TEXT_BYTES:
        raise InvalidInput(f"the input is larger than {MAX_TEXT_BYTES // (1024 * 1024)} MiB; split it", field="body")
    node = node.strip() if node and node.strip() else None
    if delivery is not None and not (0 < len(delivery) <= 100):
        raise InvalidInput("a delivery id is 1 to 100 characters", field="delivery")
    chosen = detect_format(text) if fmt in ("auto", "", None) else fmt
    turns = db.ingest_turns
    if not turns.acquire(timeout=INGEST_WAIT_S):
        busy = f"no ingest turn within {INGEST_WAIT_S:.0f} s: {turns.size} ingests have been in progress"
        raise Busy(f"{busy} all that time; send it again later")
    try:
        return _ingest(db, text, chosen, actor, node, source_name, delivery, request_id)
    finally:
        turns.release()


def _ingest(
    db: Database,
    text: str,
    chosen: str,
    actor: Actor,
    node: str | None,
    source_name: str,
    delivery: str | None,
    request_id: int | None,
) -> HealthIngestReport:
    now = db.clock.now()
    parsed = parse(text, chosen, now, node)
    with db.reader() as session:
        inventory = read_inventory(session, parsed, node)
    prepared = prepare(parsed, now, actor, source_name[:200], inventory, db.dialect, node, delivery, chosen)
    with db.transaction() as session:
        stored = store(session, prepared)
        if request_id is not None:
            found = inventory.node(node)[0] if node else None
            codes = [o.code for o in parsed.observations]
            complete_request(session, request_id, found.id if found else None, now, codes)
    report = complete(prepared, stored)
    if report.event_ids:
        notify(db, NewEvents(report.event_ids, report.facts))
    return report


def ingest_file(db: Database, path: str | Path, fmt: str, actor: Actor, node: str | None = None) -> HealthIngestReport:
    file = Path(path)
    if file.stat().st_size > MAX_TEXT_BYTES:
        raise InvalidInput(f"{file} is larger than {MAX_TEXT_BYTES // (1024 * 1024)} MiB; split it", field="file")
    text = file.read_bytes().decode("utf-8", errors="replace")
    return ingest(db, text, fmt, actor, node, str(file))
