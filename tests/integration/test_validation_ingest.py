"""Recording validation results: bad input named by line, nothing half-applied, and re-ingest changing nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from gpufleet.adapters.db.models import ValidationAttempt, ValidationResult
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden
from gpufleet.validation.analytics import threshold_report
from gpufleet.validation.ingest import ingest_records, ingest_results
from tests.factories import OPERATOR, VIEWER
from tests.integration.validation_support import attempt_records, jsonl, node_id, record, seed_fleet


@pytest.fixture
def fleet(db: Database) -> Database:
    seed_fleet(db)
    return db


def counts(db: Database) -> tuple[int, int]:
    with db.reader() as s:
        attempts = s.execute(select(func.count()).select_from(ValidationAttempt)).scalar_one()
        results = s.execute(select(func.count()).select_from(ValidationResult)).scalar_one()
    return int(attempts), int(results)


def attempt(db: Database, serial: str, number: int) -> ValidationAttempt:
    with db.reader() as s:
        row = s.execute(
            select(ValidationAttempt).where(
                ValidationAttempt.node_id == node_id(serial), ValidationAttempt.attempt == number
            )
        ).scalar_one()
        s.expunge(row)
        return row


def test_a_complete_attempt_is_recorded_with_its_outcome(fleet: Database) -> None:
    records = attempt_records("E1", 1, 3) + attempt_records("host-e2", 1, 3, first_fail=2)
    report = ingest_results(fleet, jsonl(records), "results.jsonl", OPERATOR)
    assert report.ok and report.applied, report.as_dict()
    assert (report.added, report.attempts_created, report.attempts_passed, report.attempts_failed) == (5, 2, 1, 1)
    passed, failed = attempt(fleet, "E1", 1), attempt(fleet, "E2", 1)
    assert (passed.status, passed.passes_recorded, passed.first_failed_pass, passed.gpus) == ("passed", 3, None, 8)
    assert (failed.status, failed.first_failed_pass, failed.path) == ("failed", 2, "slow_path")
    assert (passed.finished_at - passed.started_at).total_seconds() == 3 * 3600


def test_reingesting_the_same_file_changes_nothing(fleet: Database) -> None:
    text = jsonl(attempt_records("E1", 1, 3) + attempt_records("E2", 1, 2)[:1])
    first = ingest_results(fleet, text, "r.jsonl", OPERATOR)
    before = counts(fleet)
    again = ingest_results(fleet, text, "r.jsonl", OPERATOR)
    assert again.ok and (again.added, again.duplicates, again.attempts_created) == (0, 4, 0)
    assert again.summary_line().startswith("no changes")
    assert counts(fleet) == before == (2, first.added)
    # The rest of an unfinished attempt arrives later, together with the lines already sent.
    more = ingest_results(fleet, jsonl(attempt_records("E2", 1, 2)), "r2.jsonl", OPERATOR)
    assert (more.added, more.duplicates, more.attempts_passed) == (1, 1, 1)


def test_bad_records_are_reported_by_line_and_nothing_is_recorded(fleet: Database) -> None:
    good = attempt_records("E1", 1, 3)
    lines = [
        json.dumps(good[0]),  # 1 ok
        json.dumps(record("NOPE", 1, 1)),  # 2 unknown node
        json.dumps(record("E3", 1, 2)),  # 3 out of order: pass 2 before pass 1
        json.dumps({**good[0], "result": "fail"}),  # 4 conflicting duplicate of line 1
        json.dumps({k: v for k, v in record("E4", 1, 1).items() if k != "finished_at"}),  # 5 no timestamp
        "{not json",  # 6
        json.dumps(record("E5", 1, 1, "fail")),  # 7 ok: a failing first pass
        json.dumps(record("E5", 1, 2)),  # 8 a pass after the attempt failed
        json.dumps(good[0]),  # 9 exact duplicate of line 1: skipped, not an error
        json.dumps(record("E6", 1, 1, cluster="nowhere")),  # 10 unknown cluster
        "",
        json.dumps(good[1]),  # 12 ok
        json.dumps({**good[2], "started_at": good[0]["started_at"]}),  # 13 starts before pass 2 finished
    ]
    report = ingest_results(fleet, "\n".join(lines) + "\n", "bad.jsonl", OPERATOR)
    assert not report.ok and not report.applied
    assert [(e.line, e.field) for e in report.errors] == [
        (2, "node"),
        (3, "pass_number"),
        (4, "pass_number"),
        (5, "finished_at"),
        (6, None),
        (8, "pass_number"),
        (10, "cluster"),
        (13, "started_at"),
    ]
    messages = {e.line: e.message for e in report.errors}
    assert "unknown node 'NOPE'" in messages[2]
    assert "out of order" in messages[3] and "pass 1" in messages[3]
    assert "conflicts with the record on line 1" in messages[4]
    assert "failing pass ends the attempt" in messages[8]
    assert [n.line for n in report.notes] == [9]
    assert report.summary_line().startswith("nothing recorded: 8 bad record(s)")
    assert counts(fleet) == (0, 0)

    partial = ingest_results(fleet, "\n".join(lines) + "\n", "bad.jsonl", OPERATOR, partial=True)
    assert partial.applied and partial.added == 3 and len(partial.errors) == 8
    assert counts(fleet) == (2, 3)
    # The bad lines left no trace in the analytics: one failed attempt at pass 1, one attempt still in progress.
    rows = threshold_report(fleet, VIEWER).rows
    assert [(r.k, r.value_of_pass) for r in rows][:1] == [(1, 1)] and rows[0].attempts == 1


def test_a_json_array_body_reports_the_line_each_object_starts_on(fleet: Database) -> None:
    body = "[\n" + json.dumps(record("E1", 1, 1)) + ",\n" + json.dumps(record("GONE", 1, 1), indent=1) + "\n]"
    report = ingest_results(fleet, body, "upload", OPERATOR)
    assert [(e.line, e.field) for e in report.errors] == [(3, "node")]


def test_a_reported_pass_under_the_sku_floor_is_recorded_as_a_failure(fleet: Database) -> None:
    low = record("E1", 1, 1, checks={"nccl_allreduce_busbw_gbps": 420.0, "ib_bw_gbps": 390.0, "dcgm_r3": True})
    report = ingest_records(fleet, [low], OPERATOR)
    assert report.applied and report.attempts_failed == 1
    assert "under the H100 floor of 460 GB/s" in report.notes[0].message
    with fleet.reader() as s:
        stored = s.execute(select(ValidationResult)).scalar_one()
        s.expunge(stored)
    assert (stored.result, stored.reported_result) == ("fail", "pass")
    assert stored.failures and "nccl_allreduce_busbw_gbps" in stored.failures[0]


def test_passes_after_a_failure_judged_by_the_criteria_are_skipped_not_refused(fleet: Database) -> None:
    low = {"nccl_allreduce_busbw_gbps": 420.0, "dcgm_r3": True}
    records = [record("E1", 1, p, checks=low if p == 1 else {"dcgm_r3": True}, passes_required=3) for p in (1, 2, 3)]
    report = ingest_records(fleet, records, OPERATOR)
    assert report.ok and report.applied and (report.added, report.skipped, report.attempts_failed) == (1, 2, 1)
    assert [n.line for n in report.notes] == [1, 2, 3]
    again = ingest_records(fleet, records, OPERATOR)
    assert again.ok and (again.added, again.duplicates, again.skipped) == (0, 1, 2)
    assert again.summary_line().startswith("no changes")
    failed = attempt(fleet, "E1", 1)
    assert (failed.status, failed.first_failed_pass, failed.passes_recorded) == ("failed", 1, 1)


def test_only_operators_record_results(fleet: Database) -> None:
    with pytest.raises(Forbidden):
        ingest_results(fleet, jsonl([record("E1", 1, 1)]), "r.jsonl", VIEWER)


def test_dry_run_plans_without_writing(fleet: Database) -> None:
    report = ingest_results(fleet, jsonl(attempt_records("E1", 1, 2)), "r.jsonl", OPERATOR, dry_run=True)
    assert report.ok and not report.applied and report.added == 2
    assert report.summary_line().startswith("would record 2")
    assert counts(fleet) == (0, 0)
