"""The remediation figures: time to repair split software/hardware, and the share resolved without a person.

MTTR runs from detection (the first evidence's observation) to reintegration (admission after a passing validation).
A case counts as resolved without a human when it was reintegrated and no person acted on it; work done by the
supplier behind an RMA ticket the controller raised is not a person of ours. The denominator is every case that
needed remediation and has an outcome: reintegrated, closed by a person, or waiting for one. Dismissed cases and dry
runs are left out; cases still moving (and those waiting on a supplier) have no outcome yet.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from gpufleet.domain.remediation import MTTR_GROUPS, CaseState, percentile
from gpufleet.domain.xid_policy import Kind
from gpufleet.platform.context import Actor
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden
from gpufleet.remediation.reboots import reboot_figures
from gpufleet.reports import store

NO_OUTCOME = ("dismissed", "dry_run")


@dataclass
class Tally:
    decided: int = 0
    automated: int = 0

    @property
    def rate(self) -> float | None:
        return round(self.automated / self.decided, 4) if self.decided else None

    def as_dict(self) -> dict[str, Any]:
        return {"cases": self.decided, "automated": self.automated, "rate": self.rate}


@dataclass
class Figures:
    cases_total: int = 0
    open_cases: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    minutes: dict[str, list[float]] = field(default_factory=lambda: {"software": [], "hardware": []})
    open_minutes: dict[str, list[float]] = field(default_factory=lambda: {"software": [], "hardware": []})
    """How long the cases not yet resolved have been open: MTTR counts only finished ones, which flatters it while a
    supplier still holds units."""
    overall: Tally = field(default_factory=Tally)
    by_supplier: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_cluster: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_action: dict[str, int] = field(default_factory=dict)
    reboots: dict[str, Any] = field(default_factory=dict)

    def mttr(self, group: str, q: float) -> float | None:
        value = percentile(self.minutes[group], q)
        return round(value, 1) if value is not None else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases_total": self.cases_total,
            "open_cases": self.open_cases,
            "cases_by_state": dict(sorted(self.by_state.items())),
            "mttr_minutes": {
                group: {
                    "count": len(values),
                    "p50": self.mttr(group, 0.5),
                    "p90": self.mttr(group, 0.9),
                }
                for group, values in self.minutes.items()
            },
            "unresolved_minutes": {
                group: {
                    "count": len(values),
                    "age_p50": _rounded(percentile(values, 0.5)),
                    "age_max": _rounded(max(values, default=None)),
                }
                for group, values in self.open_minutes.items()
            },
            "automation": {
                **self.overall.as_dict(),
                "by_supplier": {k: v.as_dict() for k, v in sorted(self.by_supplier.items())},
                "by_cluster": {k: v.as_dict() for k, v in sorted(self.by_cluster.items())},
            },
            "repairs_by_action": dict(sorted(self.by_action.items())),
            "reboots": self.reboots,
        }


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def compute(session: UnitOfWork, since: datetime | None = None, now: datetime | None = None) -> Figures:
    """The figures over cases opened since ``since``; with ``now``, also the age of those still unresolved."""
    suppliers = store.supplier_names(session)
    clusters = store.cluster_names_by_id(session)
    rows = store.case_outcomes(session, since)
    out = Figures()
    by_state: dict[str, int] = defaultdict(int)
    by_action: dict[str, int] = defaultdict(int)
    for r in rows:
        if r.dry_run:
            continue
        out.cases_total += 1
        by_state[r.state] += 1
        if r.state not in (CaseState.REINTEGRATED.value, CaseState.CLOSED.value):
            out.open_cases += 1
            if now is not None:
                group = MTTR_GROUPS.get(Kind(r.kind), "hardware")
                out.open_minutes[group].append(max(0.0, (now - r.detected_at).total_seconds() / 60))
        if r.action:
            by_action[r.action] += 1
        reintegrated = r.resolution == "reintegrated"
        if reintegrated and r.closed_at is not None:
            group = MTTR_GROUPS.get(Kind(r.kind), "hardware")
            out.minutes[group].append((r.closed_at - r.detected_at).total_seconds() / 60)
        decided = (
            reintegrated
            or r.state == CaseState.NEEDS_HUMAN.value
            or (r.state == CaseState.CLOSED.value and r.resolution not in NO_OUTCOME)
        )
        if not decided:
            continue
        automated = reintegrated and not r.human
        for tally in (
            out.overall,
            out.by_supplier[suppliers.get(r.supplier_id, "?")],
            out.by_cluster[clusters.get(r.cluster_id, "?")],
        ):
            tally.decided += 1
            tally.automated += int(automated)
    out.by_state = dict(by_state)
    out.by_action = dict(by_action)
    out.reboots = reboot_figures(session, since)
    return out


def mttr_breakdown(session: UnitOfWork, since: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Where repair time goes: for reintegrated cases of each group, the mean minutes spent in each case state and
    its share of the total (what dominates hardware MTTR: the supplier's turnaround, validation, diagnosis...)."""
    cases, steps = store.reintegrated_transitions(session, since)
    kinds = {r.id: (MTTR_GROUPS.get(Kind(r.kind), "hardware"), r.detected_at) for r in cases}
    totals: dict[str, dict[str, float]] = {"software": defaultdict(float), "hardware": defaultdict(float)}
    counts = {"software": 0, "hardware": 0}
    previous: dict[int, tuple[str, datetime]] = {}
    for case_id, at, to_state in steps:
        group, detected = kinds[case_id]
        state, since_at = previous.get(case_id, ("detected", detected))
        totals[group][state] += (at - since_at).total_seconds() / 60
        previous[case_id] = (to_state or state, at)
        if to_state == CaseState.REINTEGRATED.value:
            counts[group] += 1
    out: dict[str, dict[str, Any]] = {}
    for group, spent in totals.items():
        n = counts[group]
        whole = sum(spent.values()) or 1.0
        out[group] = {
            "cases": n,
            "mean_minutes_by_state": {k: round(v / n, 1) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}
            if n
            else {},
            "share_by_state": {k: round(v / whole, 3) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])},
        }
    return out


def remediation_figures(db: Database, actor: Actor, since: datetime | None = None) -> dict[str, Any]:
    if actor.tenant_scoped:
        raise Forbidden("remediation figures are fleet data; a tenant-scoped token cannot read them")
    with db.reader() as session:
        figures = compute(session, since, db.clock.now())
        return {**figures.as_dict(), "mttr_breakdown": mttr_breakdown(session, since)}


def simulation_figures(db: Database, now: datetime | None = None) -> dict[str, Any]:
    """The figures ``gpufleet simulate`` adds to its JSON, from what the product recorded; ``now`` is the run's end."""
    with db.reader() as session:
        figures = compute(session, now=now)
        breakdown = mttr_breakdown(session)
    return {
        "mttr_software_min_p50": figures.mttr("software", 0.5),
        "mttr_software_min_p90": figures.mttr("software", 0.9),
        "mttr_hardware_min_p50": figures.mttr("hardware", 0.5),
        "mttr_hardware_min_p90": figures.mttr("hardware", 0.9),
        "hardware_unresolved_cases": len(figures.open_minutes["hardware"]),
        "hardware_unresolved_age_min_p50": _rounded(percentile(figures.open_minutes["hardware"], 0.5)),
        "automation_rate": figures.overall.rate,
        "cases_total": figures.cases_total,
        "reboots_returned_share": figures.reboots.get("returned_share"),
        "remediation": {**figures.as_dict(), "mttr_breakdown": breakdown},
    }


class Gauge(NamedTuple):
    """One Prometheus gauge family: name, help, label names and (label values, value) samples."""

    name: str
    doc: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]]


SCRAPE_WINDOW = timedelta(days=30)


def remediation_gauges(session: UnitOfWork, now: datetime) -> list[Gauge]:
    """The remediation figures as gauges: cases by state, MTTR and automation over the last 30 days, reboots,
    breakers and the outbox."""
    figures = compute(session, now - SCRAPE_WINDOW)
    open_by = store.open_cases_by_state_and_cluster(session)
    mttr = [
        ((group, q), value)
        for group in ("software", "hardware")
        for q, value in (("0.5", figures.mttr(group, 0.5)), ("0.9", figures.mttr(group, 0.9)))
        if value is not None
    ]
    automation = [(("all", "fleet"), figures.overall.rate)] + [
        ((scope, name), tally.rate)
        for scope, tallies in (("supplier", figures.by_supplier), ("cluster", figures.by_cluster))
        for name, tally in sorted(tallies.items())
    ]
    breakers = store.breaker_states(session)
    outbox = store.outbox_counts(session)
    share = figures.reboots.get("returned_share")
    return [
        Gauge(
            "gpufleet_remediation_open_cases",
            "Open remediation cases by state and cluster",
            ("state", "cluster"),
            [((s, c), float(n)) for s, c, n in open_by],
        ),
        Gauge(
            "gpufleet_remediation_mttr_minutes",
            "Detection to reintegration over the last 30 days",
            ("kind", "quantile"),
            [(k, float(v)) for k, v in mttr],
        ),
        Gauge(
            "gpufleet_remediation_automation_ratio",
            "Cases resolved without a person over the last 30 days",
            ("scope", "name"),
            [(k, float(v)) for k, v in automation if v is not None],
        ),
        Gauge(
            "gpufleet_remediation_reboots_returned_ratio",
            "Share of reboots that came back (last 30 days)",
            (),
            [((), float(share))] if share is not None else [],
        ),
        Gauge(
            "gpufleet_remediation_breaker_open",
            "1 while a cluster's circuit breaker is open",
            ("cluster",),
            [((c,), 1.0 if s == "open" else 0.0) for c, s in breakers],
        ),
        Gauge(
            "gpufleet_outbox_messages",
            "Notifications in the outbox by status",
            ("status",),
            [((s,), float(n)) for s, n in outbox],
        ),
    ]
