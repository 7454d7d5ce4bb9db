"""The simulator's use of validation gating: the product decides the path, the driver runs it, the history records it.

Which path a node takes (fast track, slow path, canary), with which suite and how many passes, is the product's
decision (``validation.policy.plan_for_node``); the simulated driver runs that suite; its pass results are
recorded through the same ingest service as a JSONL file or the API, so admission is gated exactly as in production.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from gpufleet.adapters.drivers.base import ValidationResult, ValidationSuite
from gpufleet.domain.validation import CHECKS, SUITES, CheckKind
from gpufleet.platform.context import Actor
from gpufleet.platform.database import Database
from gpufleet.sim.scenario import Scenario
from gpufleet.validation.ingest import record_results
from gpufleet.validation.policy import plan_for_node, set_policy

SOURCE = "simulated-driver"
NOMINAL_FLOOR = 100.0
"""Stands in for a floor the criteria file does not give, so measured checks still report a number."""


class RecordRefused(RuntimeError):
    pass


@dataclass(frozen=True)
class Plan:
    path: str
    suite: ValidationSuite
    attempt: int
    passes_required: int
    config_version: str | None


def suite(name: str, passes: int, floors: dict[str, float]) -> ValidationSuite:
    spec = SUITES[name]
    measured = {c: floors.get(c, NOMINAL_FLOOR) for c in spec.checks if CHECKS[c].kind is CheckKind.MINIMUM}
    return ValidationSuite(name, spec.checks, passes, spec.minutes, measured)


def plan(session: Session, node_id: str, now: datetime) -> Plan:
    decided = plan_for_node(session, node_id, now)
    d = decided.decision
    floors = dict(decided.criteria.minimums) if decided.criteria is not None else {}
    return Plan(d.path.value, suite(d.suite, d.passes, floors), decided.attempt, d.passes, decided.config_version)


def records(
    node_id: str, cluster: str, p: Plan, result: ValidationResult, when: Callable[[datetime], datetime]
) -> list[dict[str, Any]]:
    """The driver's passes as result records, in the format ``gpufleet validation ingest`` reads."""
    out = []
    for r in result.passes:
        row: dict[str, Any] = {
            "node": node_id,
            "cluster": cluster,
            "attempt": p.attempt,
            "pass_number": r.number,
            "suite": p.suite.name,
            "started_at": when(r.started_at).isoformat(),
            "finished_at": when(r.finished_at).isoformat(),
            "result": "pass" if r.passed else "fail",
            "checks": dict(r.checks),
            "path": p.path,
            "passes_required": p.passes_required,
        }
        if p.config_version is not None:
            row["config_version"] = p.config_version
        out.append(row)
    return out


def record(session: Session, rows: list[dict[str, Any]], now: datetime) -> None:
    if not rows:
        return
    report = record_results(session, list(enumerate(rows, start=1)), SOURCE, now)
    if not report.ok:
        raise RecordRefused("; ".join(str(e) for e in report.errors[:3]))


def apply_policies(db: Database, scenario: Scenario, actor: Actor) -> None:
    """Set each cluster's validation policy from the scenario, through the same service as the CLI and API."""
    changes = scenario.policies.validation.changes()
    if not changes:
        return
    for cluster in scenario.fleet.clusters:
        set_policy(db, cluster.name, changes, actor)
