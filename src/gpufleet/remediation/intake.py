"""From health events to cases: one open case per node incident, later evidence attached to it.

Events arrive in ``health_events`` from the telemetry parsers, the node agent, the API, or the simulator. The
controller takes the unprocessed ones with a node, reads each node's batch together (so Xid 48 and 63 seen in one
burst are one decision), and either attaches them to the node's open case, opens a case, or keeps them as evidence
only (informational codes, stale observations, nodes that are not serving). Every event is marked processed in the
same transaction as its outcome, so a crash re-reads it and a second controller never takes it twice.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gpufleet.domain.lifecycle import SERVING_STATES
from gpufleet.domain.remediation import CaseState, kind_after
from gpufleet.domain.xid_policy import (
    NOTHING,
    Action,
    Classification,
    Kind,
    Seen,
    XidPolicy,
    classify,
    repeat_escalation,
    strength,
)
from gpufleet.platform.database import UnitOfWork
from gpufleet.platform.errors import InvalidInput
from gpufleet.remediation import store
from gpufleet.remediation.policy import PolicyBook
from gpufleet.remediation.reboots import reboot_observed
from gpufleet.remediation.runtime import ClusterBook
from gpufleet.remediation.safety import note_case_opened

SEVERITIES = ("info", "warning", "critical")
REBOOTED = "node:rebooted"
evidence_query = store.evidence_query
"""The read of a case's evidence (``node_events``), kept by this name here for the callers that check its plan."""


def record_health_event(
    session: UnitOfWork,
    node_id: str | None,
    code: str,
    observed_at: datetime,
    now: datetime,
    severity: str = "critical",
    source: str = "json",
    gpu_index: int | None = None,
    message: str = "",
    subject: str | None = None,
    fingerprint: str | None = None,
    status: str = "firing",
    data: dict[str, Any] | None = None,
) -> int | None:
    """Store one health observation; ``None`` when the same fingerprint was stored before (a repeated delivery)."""
    if severity not in SEVERITIES:
        raise InvalidInput(f"unknown severity '{severity}'; expected one of: {', '.join(SEVERITIES)}", field="severity")
    if not code or len(code) > 80:
        raise InvalidInput("a code of 1 to 80 characters is required, e.g. xid:79", field="code")
    if observed_at.tzinfo is None:
        raise InvalidInput("the observation time needs a time zone", field="observed_at")
    key = (
        fingerprint
        or hashlib.sha256(
            f"{node_id}|{subject}|{code}|{gpu_index}|{observed_at.isoformat()}|{status}".encode()
        ).hexdigest()
    )
    if store.event_stored(session, key):
        return None
    return store.insert_event(
        session,
        fingerprint=key,
        source=source,
        code=code,
        severity=severity,
        status=status,
        node_id=node_id,
        gpu_index=gpu_index,
        subject=subject or node_id or "",
        message=message,
        observed_at=observed_at,
        received_at=now,
        data=data or {},
    )


@dataclass
class IntakeResult:
    opened: list[int] = field(default_factory=list)
    attached: int = 0
    evidence_only: int = 0
    stale: int = 0
    events: int = 0
    tripped: dict[int, str] = field(default_factory=dict)
    """Breakers this intake tripped, by cluster."""
    woken: list[int] = field(default_factory=list)
    """Open cases the new evidence made due now (held or dry-run cases re-checked)."""
    leased: dict[int, store.CaseRow] = field(default_factory=dict)
    """Cases opened leased to the caller (``process(lease_to=...)``), as written: no claim needs to read them."""

    def merge(self, other: IntakeResult) -> None:
        self.opened += other.opened
        self.woken += other.woken
        self.attached += other.attached
        self.evidence_only += other.evidence_only
        self.stale += other.stale
        self.events += other.events
        self.tripped.update(other.tripped)


def _seen(event: Any) -> Seen:
    return Seen(event.code, event.severity, event.gpu_index, event.status == "resolved")


def _verdict(policy: XidPolicy, events: list[Any]) -> Classification:
    """What these events ask for together; most telemetry is codes the policy ignores, which one lookup each tells
    without classifying them."""
    if any(e.status != "resolved" and policy.may_act(e.code, e.severity) for e in events):
        return classify(policy, [_seen(e) for e in events])
    return NOTHING


def repeat_counts(session: UnitOfWork, policy: XidPolicy, node_id: str, now: datetime) -> dict[str, int]:
    """How often each repeat rule's thing happened on the node within the rule's window, this evidence included."""
    counts: dict[str, int] = {}
    event_rules = [r for r in policy.repeats if r.counts == "fatal_events"]
    case_rules = [r for r in policy.repeats if r.counts == "cases"]
    if event_rules:
        widest = max(r.window for r in event_rules)
        rows = store.fatal_events_since(session, node_id, now - widest)
        for rule in event_rules:
            counts[rule.name] = sum(
                1
                for r in rows
                if r.observed_at >= now - rule.window and (policy.rule_for(r.code, r.severity) or _NONE).fatal
            )
    if case_rules:
        widest = max(r.window for r in case_rules)
        cases = store.cases_opened_since(session, node_id, now - widest)
        for rule in case_rules:
            kinds = {k.value for k in rule.kinds}
            counts[rule.name] = 1 + sum(
                1 for r in cases if r.opened_at >= now - rule.window and (not kinds or r.kind in kinds)
            )
    return counts


class _NoRule:
    fatal = False


_NONE = _NoRule()


@dataclass(frozen=True)
class _Evidence:
    verdict: Classification
    stronger: bool
    """The case's evidence together now asks for a stronger first action."""
    hardware: bool
    """The evidence shows a hardware fault in a case not yet taken for one."""
    wake: bool
    """The case is held or in a dry run: any new evidence has it looked at again now."""

    @property
    def changes(self) -> bool:
        return self.stronger or self.hardware or self.wake


def _evidence(policy: XidPolicy, case: Any, events: list[Any]) -> _Evidence:
    """What more events mean for an open case: the one rule that attaching them and the reaction's triage share."""
    verdict = classify(policy, [Seen(c) for c in case.codes] + [_seen(e) for e in events])
    stronger = verdict.actionable and strength(verdict.action) > strength(Action(case.start_action))
    hardware = verdict.kind is Kind.HARDWARE and case.kind != Kind.HARDWARE.value
    return _Evidence(verdict, stronger, hardware, bool(case.dry_run or case.held))


class Intake:
    def __init__(self, actor: str, correlation_prefix: str, clusters: ClusterBook) -> None:
        self.actor = actor
        self.prefix = correlation_prefix
        self.clusters = clusters

    def triage(
        self,
        session: UnitOfWork,
        now: datetime,
        book: PolicyBook,
        ids: list[int],
        facts: dict[int, Any] | None = None,
        held_clusters: Collection[int] = (),
    ) -> list[int]:
        """Which of these new events need a decision now, read without writing: those that may open a case, those that
        change an open case (a stronger action, hardware after all, or a case held or in a dry run, which new
        evidence wakes), and observed reboots. The rest is noise the policy ignores or evidence that changes nothing;
        the controller's next pass marks it processed or attaches it in bulk, so a burst of it never queues for the
        write lock ahead of a real fault.

        ``facts`` are the events as the ingest stored them (ids without facts were stored processed); without them the
        events are read. An event processed meanwhile by another process may still be named: the intake skips it.

        A fault that would open a case in one of ``held_clusters`` (a breaker open, the cluster's budget spent) would
        only be held: it is left to the pass too. In a storm those are nearly all of them, and each case opened and
        held here would make the ingest that carried it wait.
        """
        # With overrides per cluster or pool, which policy judges a node's events is the intake's to work out: only
        # the held clusters are left out here, and every other event goes on.
        if not book.uniform and not held_clusters:
            return list(ids)
        policy = book.get(None) if book.uniform else None
        horizon = now - timedelta(minutes=policy.settings.stale_after_minutes) if policy is not None else now
        rows: list[Any] = (
            [facts[i] for i in ids if i in facts] if facts is not None else store.unprocessed_facts(session, ids)
        )
        by_node: dict[str, list[Any]] = defaultdict(list)
        for e in rows:
            by_node[e.node_id].append(e)
        cases = store.open_case_facts(session, list(by_node))
        keep = set()
        opening = []
        for node_id, items in by_node.items():
            case = cases.get(node_id)
            if any(e.code == REBOOTED for e in items):
                keep.add(node_id)
            elif case is not None:
                if policy is None or _evidence(policy, case, items).changes:
                    keep.add(node_id)
            elif policy is None or _verdict(policy, [e for e in items if e.observed_at >= horizon]).actionable:
                opening.append(node_id)
        if opening and held_clusters:
            nodes = store.nodes(session, opening)
            opening = [n for n in opening if n in nodes and nodes[n].cluster_id not in held_clusters]
        keep.update(opening)
        return [e.id for e in rows if e.node_id in keep]

    def process(
        self,
        session: UnitOfWork,
        now: datetime,
        book: PolicyBook,
        limit: int = 1000,
        ids: list[int] | None = None,
        lease_to: str | None = None,
    ) -> IntakeResult:
        """Take unprocessed events (only ``ids`` when given: the ones an ingest just stored) into cases.

        With ``lease_to`` the cases opened are written leased to that owner and handed back in ``leased``, for a caller
        that moves them on in this transaction (the reaction) without reading them back to claim them.
        """
        events = store.unprocessed_events(session, limit, ids)
        result = IntakeResult(events=len(events))
        if not events:
            return result
        by_node: dict[str, list[Any]] = defaultdict(list)
        for e in events:
            by_node[e.node_id].append(e)
        cases = store.open_cases_of(session, list(by_node))
        # Most telemetry is noise the policy ignores: when no override depends on where a node is, decide first
        # and read only the nodes that may get a case (or an observed reboot).
        uniform = book.get(None) if book.uniform else None
        wanted = list(by_node)
        verdicts: dict[str, Classification] = {}
        if uniform is not None:
            horizon = now - timedelta(minutes=uniform.settings.stale_after_minutes)
            for n, items in by_node.items():
                verdicts[n] = _verdict(uniform, [e for e in items if e.observed_at >= horizon])
            wanted = [
                n
                for n, items in by_node.items()
                if n in cases or verdicts[n].actionable or any(e.code == REBOOTED for e in items)
            ]
        nodes = store.nodes(session, wanted) if wanted else {}
        for e in events:
            if e.code == REBOOTED:
                self._observed_reboot(
                    session, nodes[e.node_id], cases.get(e.node_id), e, store.event_data(session, e.id)
                )
        outcome: dict[int, int | None] = {}
        stale_ids: list[int] = []
        for node_id, items in by_node.items():
            node = nodes.get(node_id)
            policy = uniform or book.get(node.cluster_id if node else None, node.pool if node else None)
            horizon = now - timedelta(minutes=policy.settings.stale_after_minutes)
            fresh = [e for e in items if e.observed_at >= horizon]
            stale_ids += [e.id for e in items if e.observed_at < horizon]
            case = cases.get(node_id)
            if case is not None:
                if self._attach(session, case, items, policy, now):
                    result.woken.append(case.id)
                outcome.update({e.id: case.id for e in items})
                result.attached += len(items)
                continue
            verdict = verdicts.get(node_id) or _verdict(policy, fresh)
            if node is None or not verdict.actionable or node.state not in SERVING_STATES:
                outcome.update({e.id: None for e in items})
                result.evidence_only += len(items)
                continue
            opened = self._open(session, node, fresh, verdict, policy, now, result, lease_to)
            result.opened.append(opened.id)
            if lease_to is not None:
                result.leased[opened.id] = opened
            outcome.update({e.id: opened.id for e in items})
        result.stale = len(stale_ids)
        for case_id in set(outcome.values()):
            ids = [i for i, c in outcome.items() if c == case_id]
            store.mark_processed(session, ids, now, case_id)
        for event_id in stale_ids:
            data = store.event_data(session, event_id)
            data["remediation"] = "stale: observed before the policy's stale_after window"
            store.set_event_data(session, event_id, data)
        return result

    def _observed_reboot(
        self, session: UnitOfWork, node: store.NodeRow, case: store.CaseRow | None, event: Any, data: dict[str, Any]
    ) -> None:
        """A reboot nobody here asked for, reported as ``node:rebooted`` (``data.went_down_at`` when known)."""
        went_down = None
        if isinstance(data.get("went_down_at"), str):
            try:
                went_down = datetime.fromisoformat(data["went_down_at"].replace("Z", "+00:00"))
            except ValueError:
                went_down = None
        if went_down is not None and (went_down.tzinfo is None or went_down > event.observed_at):
            went_down = None
        reason = str(data.get("reason") or "observed: the node rebooted on its own")
        reboot_observed(
            session, node.id, node.cluster_id, went_down, event.observed_at, reason, case.id if case else None
        )

    def _open(
        self,
        session: UnitOfWork,
        node: store.NodeRow,
        events: list[Any],
        verdict: Classification,
        policy: XidPolicy,
        now: datetime,
        result: IntakeResult,
        lease_to: str | None = None,
    ) -> store.CaseRow:
        start, kind, reason = verdict.action, verdict.kind, "; ".join(verdict.reasons)
        rule = repeat_escalation(policy, repeat_counts(session, policy, node.id, now))
        if rule is not None and strength(rule.action) > strength(start):
            start, kind = rule.action, kind_after(Kind.HARDWARE, rule.action)
            reason = f"{rule.reason or rule.name}; {reason}"
        detected = min(min(e.observed_at for e in events), now)
        component = next(
            (d["component"] for d in (store.event_data(session, e.id) for e in events) if d.get("component")), None
        )
        case = store.insert_case(
            session,
            {
                "node_id": node.id,
                "open_node_id": node.id,
                "cluster_id": node.cluster_id,
                "nvlink_domain_id": node.nvlink_domain_id,
                "supplier_id": node.supplier_id,
                "pool": node.pool,
                "hostname": node.hostname,
                "state": CaseState.DETECTED.value,
                "state_since": now,
                "action": None,
                "attempt": 0,
                "start_action": start.value,
                "floor_action": None,
                "kind": kind.value,
                "owner": verdict.owner.value if start is not Action.RMA else "supplier",
                "drain": verdict.drain.value,
                "codes": list(verdict.codes),
                "gpu_index": verdict.gpu_index,
                "reason": reason,
                "policy_version": policy.version,
                "dry_run": False,
                "human": False,
                "held": None,
                "detected_at": detected,
                "opened_at": now,
                "next_check_at": now,
                "deadline_at": None,
                "pending": {"component": component} if component else {},
                "plan": {},
                "correlation_id": f"{self.prefix}-{uuid.uuid4().hex[:16]}",
                "version": 1,
                "lease_owner": lease_to,
                "lease_until": now + store.LEASE if lease_to is not None else None,
            },
        )
        store.add_step(
            session,
            case.id,
            now,
            self.actor,
            "transition",
            f"opened: {reason}",
            to_state=CaseState.DETECTED.value,
            action=start.value,
            data={
                "codes": list(verdict.codes),
                "kind": kind.value,
                "owner": case.owner,
                "events": [e.id for e in events],
            },
        )
        tripped = note_case_opened(session, self.clusters, node.cluster_id, policy, now, self.actor)
        if tripped is not None:
            result.tripped[node.cluster_id] = tripped
        return case

    def _attach(
        self, session: UnitOfWork, case: store.CaseRow, events: list[Any], policy: XidPolicy, now: datetime
    ) -> bool:
        """Add evidence to the open case; True when the case should be looked at now."""
        found = _evidence(policy, case, events)
        codes = sorted(set(case.codes) | set(found.verdict.codes))
        detail = f"{len(events)} more event(s): {', '.join(sorted({e.code for e in events}))}"
        changes: dict[str, Any] = {"codes": codes}
        if found.stronger:
            changes["start_action"] = found.verdict.action.value
            detail += f"; the evidence now asks for {found.verdict.action.value}"
        if found.hardware:
            changes["kind"] = Kind.HARDWARE.value
        if found.wake:
            changes["next_check_at"] = now
        case.set(**changes)
        store.save(session, case, release=False)
        store.add_step(session, case.id, now, self.actor, "evidence", detail, data={"events": [e.id for e in events]})
        return found.wake


def node_events(session: UnitOfWork, case_id: int, latest: int | None = None) -> list[dict[str, Any]]:
    """The evidence attached to a case, oldest first; with ``latest``, only that many of the newest, so a ticket
    for a node that logged thousands of events reads no more than it sends."""
    rows = store.case_evidence(session, case_id, latest)
    if latest is not None:
        rows.reverse()
    return [
        {
            "id": r.id,
            "source": r.source,
            "code": r.code,
            "severity": r.severity,
            "status": r.status,
            "gpu_index": r.gpu_index,
            "message": r.message,
            "observed_at": r.observed_at.isoformat(),
            "received_at": r.received_at.isoformat(),
        }
        for r in rows
    ]
