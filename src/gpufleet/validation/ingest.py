"""Recording validation results: JSONL files, API bodies and the simulated driver all come through here.

The whole batch is planned in memory against a few targeted bulk reads, then written with bulk statements in one
transaction, as the inventory import does. A record that would make the history inconsistent (an unknown node, a
pass out of order, a pass after the attempt already failed, a conflicting duplicate, a missing timestamp) is
refused with its line, so nothing bad ever reaches the analytics. Re-sending records already stored changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gpufleet.adapters.formats.validation_results import parse_results
from gpufleet.domain.inventory_rows import RowError
from gpufleet.domain.lifecycle import NodeState
from gpufleet.domain.validation import (
    ResultRecord,
    ValidationPath,
    ValidationPolicy,
    criteria_failures,
    read_record,
)
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database, UnitOfWork
from gpufleet.platform.errors import Forbidden, InvalidInput
from gpufleet.validation import store
from gpufleet.validation.policy import criteria_for, policies_by_cluster

MAX_RECORDS = 1_000_000
MAX_BYTES = 256 * 1024 * 1024


@dataclass
class IngestReport:
    source: str
    records: int = 0
    added: int = 0
    duplicates: int = 0
    skipped: int = 0
    """Passes a driver ran after a pass the criteria judged a failure: not recorded, not an error."""
    attempts_created: int = 0
    attempts_passed: int = 0
    attempts_failed: int = 0
    errors: list[RowError] = field(default_factory=list)
    notes: list[RowError] = field(default_factory=list)
    """Accepted lines worth a look: duplicates skipped, a reported pass recorded as a failure by the criteria."""
    applied: bool = False
    dry_run: bool = False
    partial: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary_line(self) -> str:
        if self.errors and not self.applied and not self.dry_run:
            return f"nothing recorded: {len(self.errors)} bad record(s) in {self.source}; fix them or use --partial"
        if not self.added and not self.errors:
            text = f"no changes: {self.duplicates} record(s) in {self.source} were already recorded"
        else:
            verb = "would record" if self.dry_run else "recorded"
            text = (
                f"{verb} {self.added} pass result(s) ({self.attempts_created} new attempt(s), "
                f"{self.attempts_passed} passed, {self.attempts_failed} failed); {self.duplicates} already recorded"
            )
        if self.skipped:
            text += f"; {self.skipped} pass(es) after a failure judged by the criteria skipped"
        if self.errors:
            text += f"; {len(self.errors)} bad record(s) skipped"
        return text

    def as_dict(self, max_notes: int = 1000) -> dict[str, Any]:
        return {
            "source": self.source,
            "records": self.records,
            "added": self.added,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "attempts_created": self.attempts_created,
            "attempts_passed": self.attempts_passed,
            "attempts_failed": self.attempts_failed,
            "applied": self.applied,
            "dry_run": self.dry_run,
            "partial": self.partial,
            "ok": self.ok,
            "summary": self.summary_line(),
            "errors": [e.as_dict() for e in self.errors],
            "notes": [n.as_dict() for n in self.notes[:max_notes]],
        }


# ---------------------------------------------------------------------------------------------------------------
# Planning.


@dataclass
class _NodeInfo:
    id: str
    serial: str
    hostname: str
    state: str
    sku_id: int


@dataclass
class _Attempt:
    """An attempt as stored plus what this batch adds to it."""

    id: int | None
    node_id: str
    attempt: int
    cluster_id: int
    path: str
    suite: str
    passes_required: int
    config_version: str | None
    gpus: int
    status: str
    passes_recorded: int
    first_failed_pass: int | None
    started_at: datetime
    finished_at: datetime
    passes: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    """pass number -> (signature, line it came from in this batch or None when stored)."""
    touched: bool = False
    was_status: str = "in_progress"


def _signature(reported: str, started: datetime, finished: datetime, checks: Mapping[str, Any]) -> tuple[Any, ...]:
    return (reported, started, finished, tuple(sorted((str(k), repr(v)) for k, v in checks.items())))


class _Lookups:
    """What the batch refers to, read with a fixed number of chunked queries whatever its size."""

    def __init__(self, session: UnitOfWork, records: Sequence[ResultRecord]) -> None:
        refs = sorted({r.node for r in records})
        self.by_id: dict[str, _NodeInfo] = {}
        self.by_serial: dict[str, list[_NodeInfo]] = {}
        self.by_hostname: dict[str, list[_NodeInfo]] = {}
        for row in store.nodes_named(session, refs):
            info = _NodeInfo(*row)
            self.by_id[info.id] = info
            self.by_serial.setdefault(info.serial, []).append(info)
            self.by_hostname.setdefault(info.hostname, []).append(info)
        self.clusters: dict[str, int] = store.cluster_ids(session)
        self.skus: dict[int, tuple[str, int]] = store.sku_models(session)
        self.policies = policies_by_cluster(session)
        self.attempts: dict[tuple[str, int], _Attempt] = {}

    def resolve(self, ref: str) -> tuple[_NodeInfo | None, str | None]:
        if ref in self.by_id:
            return self.by_id[ref], None
        for table in (self.by_serial, self.by_hostname):
            found = table.get(ref, [])
            live = [n for n in found if n.state != NodeState.DECOMMISSIONED] or found
            if len(live) == 1:
                return live[0], None
            if len(live) > 1:
                ids = ", ".join(sorted(n.id for n in live))
                return None, f"'{ref}' names several nodes ({ids}); use the chassis id"
        return None, f"unknown node '{ref}': no chassis id, serial or hostname matches"

    def load_attempts(self, session: UnitOfWork, keys: Iterable[tuple[str, int]]) -> None:
        wanted = set(keys)
        node_ids = sorted({node_id for node_id, _ in wanted})
        for row in store.attempts_of_nodes(session, node_ids):
            key = (row.node_id, row.attempt)
            if key in wanted:
                self.attempts[key] = _Attempt(
                    row.id,
                    row.node_id,
                    row.attempt,
                    row.cluster_id,
                    row.path,
                    row.suite,
                    row.passes_required,
                    row.config_version,
                    row.gpus,
                    row.status,
                    row.passes_recorded,
                    row.first_failed_pass,
                    row.started_at,
                    row.finished_at,
                    was_status=row.status,
                )
        by_id = {a.id: a for a in self.attempts.values()}
        ids = sorted(i for i in by_id if i is not None)
        for attempt_id, number, reported, started, finished, checks in store.pass_records(session, ids):
            by_id[attempt_id].passes[number] = (_signature(reported, started, finished, checks or {}), None)


def _judged_failed(state: _Attempt) -> bool:
    """The attempt failed only because the criteria judged a reported pass a failure."""
    failing = state.passes.get(state.first_failed_pass or 0)
    return failing is not None and failing[0][0] == "pass"


def _new_attempt(record: ResultRecord, node: _NodeInfo, cluster_id: int, look: _Lookups) -> _Attempt:
    """An attempt first seen in this batch: its path and passes from the record, else from the cluster's policy."""
    policy = look.policies.get(cluster_id, ValidationPolicy())
    path = record.path
    if path is None:
        path = (
            ValidationPath.FAST_TRACK
            if record.suite == policy.fast_track_suite and record.suite != policy.slow_path_suite
            else ValidationPath.SLOW_PATH
        )
    passes = record.passes_required or policy.path_plan(path)[1]
    return _Attempt(
        id=None,
        node_id=node.id,
        attempt=record.attempt,
        cluster_id=cluster_id,
        path=path.value,
        suite=record.suite,
        passes_required=passes,
        config_version=record.config_version if record.config_version is not None else policy.config_version,
        gpus=look.skus.get(node.sku_id, ("", 0))[1],
        status="in_progress",
        passes_recorded=0,
        first_failed_pass=None,
        started_at=record.started_at,
        finished_at=record.finished_at,
        touched=True,
    )


@dataclass
class _Plan:
    new_attempts: list[_Attempt] = field(default_factory=list)
    results: list[tuple[_Attempt, dict[str, Any]]] = field(default_factory=list)


def _where(line: int | None) -> str:
    return f"on line {line}" if line is not None else "already stored"


def _plan_record(record: ResultRecord, look: _Lookups, plan: _Plan, report: IngestReport, source: str) -> None:
    node, why = look.resolve(record.node)
    if node is None:
        report.errors.append(RowError(record.line, "node", why or "unknown node"))
        return
    cluster_id = look.clusters.get(record.cluster)
    if cluster_id is None:
        report.errors.append(RowError(record.line, "cluster", f"unknown cluster '{record.cluster}'"))
        return
    key = (node.id, record.attempt)
    state = look.attempts.get(key)
    fresh = state is None
    if state is None:
        state = _new_attempt(record, node, cluster_id, look)
    line = record.line
    signature = _signature(record.result, record.started_at, record.finished_at, record.checks)
    known = state.passes.get(record.pass_number)
    name = f"pass {record.pass_number} of attempt {record.attempt} of {node.id}"
    if known is not None:
        if known[0] == signature:
            report.duplicates += 1
            if known[1] is not None:  # re-sending stored records is the normal, idempotent case; say nothing
                report.notes.append(RowError(line, None, f"duplicate: {name} is also on line {known[1]}; skipped"))
        else:
            report.errors.append(RowError(line, "pass_number", f"{name} conflicts with the record {_where(known[1])}"))
        return
    problem: RowError | None = None
    if cluster_id != state.cluster_id:
        problem = RowError(line, "cluster", f"attempt {record.attempt} of {node.id} ran in another cluster")
    elif record.suite != state.suite:
        problem = RowError(line, "suite", f"attempt {record.attempt} runs suite '{state.suite}', not '{record.suite}'")
    elif record.passes_required is not None and record.passes_required != state.passes_required:
        problem = RowError(line, "passes_required", f"attempt {record.attempt} requires {state.passes_required}")
    elif record.path is not None and record.path.value != state.path:
        problem = RowError(line, "path", f"attempt {record.attempt} is on the {state.path} path")
    elif state.status == "failed" and _judged_failed(state):
        # The driver saw a pass and carried on; the SKU's criteria ended the attempt. Later passes are not bad input.
        report.skipped += 1
        report.notes.append(
            RowError(
                line,
                "pass_number",
                f"skipped: attempt {record.attempt} of {node.id} ended at pass {state.first_failed_pass}, "
                "which the SKU's criteria judged a failure",
            )
        )
        return
    elif state.status == "failed":
        problem = RowError(
            line,
            "pass_number",
            f"attempt {record.attempt} of {node.id} already ended at its failing pass {state.first_failed_pass}; "
            "a failing pass ends the attempt, start a new attempt number",
        )
    elif state.status == "passed" or record.pass_number > state.passes_required:
        problem = RowError(
            line, "pass_number", f"attempt {record.attempt} of {node.id} requires {state.passes_required} passes"
        )
    elif record.pass_number != state.passes_recorded + 1:
        problem = RowError(
            line,
            "pass_number",
            f"passes out of order: pass {record.pass_number} of attempt {record.attempt} of {node.id} "
            f"came before pass {state.passes_recorded + 1}",
        )
    elif state.passes_recorded and record.started_at < state.finished_at:
        problem = RowError(
            line,
            "started_at",
            f"pass {record.pass_number} starts at {record.started_at.isoformat()}, "
            f"before pass {state.passes_recorded} finished at {state.finished_at.isoformat()}",
        )
    if problem is not None:
        report.errors.append(problem)
        return
    if fresh:
        look.attempts[key] = state
        plan.new_attempts.append(state)
        report.attempts_created += 1
    gpu_model = look.skus.get(node.sku_id, ("", 0))[0]
    failures = criteria_failures(record.checks, criteria_for(gpu_model))
    result = "fail" if record.result == "fail" or failures else "pass"
    if record.result == "pass" and failures:
        report.notes.append(RowError(line, "result", "reported pass, recorded as a failure: " + "; ".join(failures)))
    state.passes[record.pass_number] = (signature, line)
    state.passes_recorded = record.pass_number
    state.finished_at = max(state.finished_at, record.finished_at)
    state.started_at = min(state.started_at, record.started_at)
    state.touched = True
    if result == "fail":
        state.status, state.first_failed_pass = "failed", record.pass_number
    elif record.pass_number == state.passes_required:
        state.status = "passed"
    plan.results.append(
        (
            state,
            {
                "pass_number": record.pass_number,
                "started_at": record.started_at,
                "finished_at": record.finished_at,
                "seconds": record.seconds,
                "result": result,
                "reported_result": record.result,
                "checks": record.checks,
                "failures": failures,
                "source": source[:255],
            },
        )
    )
    report.added += 1


# ---------------------------------------------------------------------------------------------------------------
# Entry points.


def record_results(
    session: UnitOfWork,
    rows: Sequence[tuple[int, Mapping[str, Any]]],
    source: str,
    now: datetime,
    partial: bool = False,
    dry_run: bool = False,
    unreadable: Sequence[RowError] = (),
) -> IngestReport:
    """Check and record ``(line, record)`` pairs inside the caller's transaction; the core of every entry point.

    ``unreadable`` are lines the parser could not read at all: they count as bad records of this batch.
    """
    report = IngestReport(
        source=source, dry_run=dry_run, partial=partial, records=len(rows) + len(unreadable), errors=list(unreadable)
    )
    if len(rows) > MAX_RECORDS:
        raise InvalidInput(f"at most {MAX_RECORDS} records per batch; split the file", field="body")
    records: list[ResultRecord] = []
    for line, values in rows:
        record, errors = read_record(line, values)
        report.errors.extend(errors)
        if record is not None:
            records.append(record)
    look = _Lookups(session, records)
    keys = []
    for r in records:
        node, _ = look.resolve(r.node)
        if node is not None:
            keys.append((node.id, r.attempt))
    look.load_attempts(session, keys)
    plan = _Plan()
    for record in records:
        _plan_record(record, look, plan, report, source)
    report.errors.sort(key=lambda e: e.line)
    for attempt in {id(a): a for a, _ in plan.results}.values():
        if attempt.status != attempt.was_status:
            if attempt.status == "passed":
                report.attempts_passed += 1
            elif attempt.status == "failed":
                report.attempts_failed += 1
    if dry_run or (report.errors and not partial):
        return report
    store.write_results(session, plan.new_attempts, plan.results, now)
    report.applied = True
    return report


def _check_writer(actor: Actor) -> None:
    if actor.role < Role.OPERATOR:
        raise Forbidden("recording validation results needs the operator role")
    if actor.tenant_scoped:
        raise Forbidden("a tenant-scoped token cannot record validation results")


def ingest_results(
    db: Database,
    text: str,
    source: str,
    actor: Actor,
    fmt: str | None = None,
    partial: bool = False,
    dry_run: bool = False,
) -> IngestReport:
    """Records from JSONL text or a JSON array: all or nothing unless ``partial``, nothing written on ``dry_run``."""
    _check_writer(actor)
    try:
        raw_rows, problems = parse_results(text, fmt)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="format") from None
    unreadable = [RowError(p.line, None, p.message) for p in problems]
    with db.transaction() as session:
        rows = [(r.line, r.values) for r in raw_rows]
        return record_results(session, rows, source, db.clock.now(), partial, dry_run, unreadable)


def ingest_results_file(
    db: Database, path: str | Path, actor: Actor, partial: bool = False, dry_run: bool = False
) -> IngestReport:
    file = Path(path)
    if file.stat().st_size > MAX_BYTES:
        raise InvalidInput(f"{file} is larger than {MAX_BYTES // (1024 * 1024)} MiB; split it", field="file")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{file} is not UTF-8 text (byte {exc.start})", field="file") from None
    fmt = "json" if file.suffix.lower() == ".json" else "jsonl"
    return ingest_results(db, text, str(file), actor, fmt, partial, dry_run)


def ingest_records(
    db: Database, records: Sequence[Mapping[str, Any]], actor: Actor, source: str = "driver", partial: bool = False
) -> IngestReport:
    """Records a driver produced in memory (the simulated driver, API JSON bodies), numbered from 1."""
    _check_writer(actor)
    with db.transaction() as session:
        return record_results(
            session, [(i, r) for i, r in enumerate(records, start=1)], source, db.clock.now(), partial
        )
