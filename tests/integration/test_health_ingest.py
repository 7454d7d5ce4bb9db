"""Health ingest on both databases: matching to nodes and GPUs, duplicates, time rules, unmatched, the reaction hook."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from gpufleet.adapters.db.models import Gpu, HealthEvent, RemediationCase
from gpufleet.fleet.inventory import import_nodes
from gpufleet.health.events import EventFilter, list_events, rematch
from gpufleet.health.ingest import ingest, ingest_file, on_ingested, remove_ingested_callback
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.context import Actor, Role
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput
from tests.factories import ADMIN, OPERATOR, VIEWER, seed_reference
from tests.integration.api_support import NODES_CSV, node_id

FIXTURES = Path(__file__).parents[1] / "fixtures" / "health"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture
def fleet(db: Database) -> Database:
    seed_reference(db)
    assert import_nodes(db, NODES_CSV, "fleet.csv", OPERATOR).applied
    return db


def events(db: Database) -> list[HealthEvent]:
    with db.reader() as session:
        rows = list(session.execute(select(HealthEvent).order_by(HealthEvent.id)).scalars())
        session.expunge_all()  # keep them readable after the reader rolls back
        return rows


def test_kernel_log_matches_hosts_and_reports_the_rest(fleet: Database) -> None:
    report = ingest(fleet, fixture("kern.log"), "auto", OPERATOR, source_name="kern.log")
    assert (report.format, report.accepted, report.duplicates, report.ignored) == ("xid", 8, 0, 2)
    assert [(p.line, p.where) for p in report.problems] == [(9, "line 9")]
    assert [(u.line, u.reason) for u in report.unmatched] == [(11, "unknown node 'unknown-host-7'")]
    stored = events(fleet)
    assert stored[0].node_id == node_id("SN01") and stored[0].code == "xid:79" and stored[0].severity == "critical"
    assert stored[0].processed_at is None and stored[0].data["from"] == "kern.log"
    unmatched = [e for e in stored if e.node_id is None]
    assert len(unmatched) == 1 and unmatched[0].processed_at is not None  # nothing for remediation to act on
    assert unmatched[0].data["unmatched"] == "unknown node 'unknown-host-7'"


def test_the_same_delivery_twice_inserts_nothing(fleet: Database) -> None:
    for name in ("kern.log", "alertmanager-firing.json", "events.jsonl", "nvidia-smi-h100.xml"):
        first = ingest(fleet, fixture(name), "auto", OPERATOR, node="gpu-01" if "smi" in name else None)
        again = ingest(fleet, fixture(name), "auto", OPERATOR, node="gpu-01" if "smi" in name else None)
        assert first.accepted > 0 and again.accepted == 0, name
        assert again.duplicates == first.accepted, name
    assert len(events(fleet)) == 8 + 3 + 5 + 4


def test_alertmanager_repeat_is_a_duplicate_and_its_resolution_is_new(fleet: Database) -> None:
    ingest(fleet, fixture("alertmanager-firing.json"), "alertmanager", OPERATOR)
    payload = json.loads(fixture("alertmanager-firing.json"))
    payload["alerts"][0]["annotations"]["summary"] = "repeat_interval resend with a changed annotation"
    repeat = ingest(fleet, json.dumps(payload), "alertmanager", OPERATOR)
    assert repeat.accepted == 0 and repeat.duplicates == 3
    resolved = ingest(fleet, fixture("alertmanager-resolved.json"), "alertmanager", OPERATOR)
    assert resolved.accepted == 1
    temp = [e for e in events(fleet) if e.code == "alert:GPUHighTemperature"]
    assert [e.status for e in temp] == ["firing", "resolved"] and {e.node_id for e in temp} == {node_id("SN04")}
    assert temp[0].gpu_index == 5


def test_duplicates_inside_one_body_are_counted(fleet: Database) -> None:
    line = "Mar  2 08:41:09 gpu-01 kernel: NVRM: Xid (PCI:0000:18:00): 79, GPU has fallen off the bus.\n"
    report = ingest(fleet, line * 3, "xid", OPERATOR)
    assert (report.accepted, report.duplicates) == (1, 2)


def test_future_and_stale_events_are_stored_flagged_and_not_acted_on(fleet: Database) -> None:
    report = ingest(fleet, fixture("events.jsonl"), "json", OPERATOR)
    assert (report.future, report.stale) == (1, 1)
    flagged = {e.code: e for e in events(fleet) if e.data.get("flag")}
    assert set(flagged) == {"clock:skew", "old:news"}
    assert flagged["clock:skew"].data["flag"] == "future" and flagged["old:news"].data["flag"] == "stale"
    assert all(e.processed_at is not None for e in flagged.values())
    assert all(e.processed_at is None for e in events(fleet) if not e.data.get("flag"))


def test_future_boundary_is_five_minutes(fleet: Database, clock: ManualClock) -> None:
    now = clock.now()

    def event(minutes: float, code: str) -> dict[str, Any]:
        at = (now + timedelta(minutes=minutes)).isoformat()
        return {"node": "gpu-01", "code": code, "severity": "info", "observed_at": at}

    report = ingest(fleet, json.dumps([event(4.9, "a"), event(5.1, "b")]), "json", OPERATOR)
    assert report.future == 1 and report.accepted == 2


def test_nvidia_smi_teaches_pci_addresses_so_xid_lines_find_their_gpu(fleet: Database) -> None:
    line = "2026-03-02T08:59:00Z gpu-01 kernel: NVRM: Xid (PCI:0000:2a:00): 48, DBE\n"
    before = ingest(fleet, line, "xid", OPERATOR)
    assert before.gpu_unresolved == 1 and events(fleet)[0].gpu_index is None and events(fleet)[0].node_id
    smi = ingest(fleet, fixture("nvidia-smi-h100.xml"), "nvidia-smi", OPERATOR, node="gpu-01")
    assert smi.gpus_learned == 2
    with fleet.reader() as session:
        learned = session.execute(select(Gpu.idx, Gpu.pci_bus_id, Gpu.uuid).where(Gpu.serial == "G01-1")).one()
    assert learned == (1, "0000:2a:00.0", "GPU-2b4e1c3d-0000-4000-8000-000000000011")
    after = ingest(fleet, line.replace("08:59:00", "08:59:30"), "xid", OPERATOR)
    assert after.gpu_unresolved == 0 and events(fleet)[-1].gpu_index == 1
    wrong = ingest(fleet, line.replace("2a:00", "99:00"), "xid", OPERATOR)
    assert wrong.unmatched[0].reason == f"node {node_id('SN01')} has no GPU at PCI address 0000:99:00.0"


def test_nvidia_smi_without_node_finds_it_by_gpu_serial(fleet: Database) -> None:
    report = ingest(fleet, fixture("nvidia-smi-h100.xml"), "auto", OPERATOR)
    assert report.format == "nvidia-smi" and report.accepted == 4 and not report.unmatched
    assert {e.node_id for e in events(fleet)} == {node_id("SN01")}


def test_a_gpu_serial_of_another_node_is_unmatched(fleet: Database) -> None:
    report = ingest(fleet, fixture("nvidia-smi-h100.xml"), "nvidia-smi", OPERATOR, node="gpu-02")
    assert report.accepted == 4 and len(report.unmatched) == 4
    assert report.unmatched[0].reason == f"GPU serial G01-1 belongs to node {node_id('SN01')}, not {node_id('SN02')}"


def test_gpu_index_beyond_the_node_is_unmatched(fleet: Database) -> None:
    body = {"node": "gpu-09", "gpu": 7, "code": "x", "severity": "info", "observed_at": "2026-03-02T08:00:00Z"}
    report = ingest(fleet, json.dumps(body), "json", OPERATOR)
    assert report.unmatched[0].reason == f"node {node_id('SN09')} has 4 GPUs; there is no GPU index 7"


def test_dcgm_reports_find_nodes_by_gpu_serial_and_delivery_ids_make_retries_duplicates(fleet: Database) -> None:
    first = ingest(fleet, fixture("dcgm4-fail.json"), "auto", OPERATOR, delivery="d-1")
    assert first.format == "dcgm" and first.accepted == 2
    assert {(e.node_id, e.gpu_index, e.code) for e in events(fleet)} == {
        (node_id("SN02"), 1, "dcgm:error-3"),
        (node_id("SN02"), 0, "dcgm:error-50"),
    }
    assert ingest(fleet, fixture("dcgm4-fail.json"), "dcgm", OPERATOR, delivery="d-1").duplicates == 2
    assert ingest(fleet, fixture("dcgm4-fail.json"), "dcgm", OPERATOR, delivery="d-2").accepted == 2
    stamped = events(fleet)[0]
    assert stamped.data["time"] == "received" and stamped.observed_at == fleet.clock.now()


def test_dcgm_3x_and_pass_reports(fleet: Database) -> None:
    assert ingest(fleet, fixture("dcgm3-fail.json"), "dcgm", OPERATOR).accepted == 3
    passed = ingest(fleet, fixture("dcgm4-pass.json"), "dcgm", OPERATOR, node="gpu-01")
    assert passed.accepted == 1 and events(fleet)[-1].code == "dcgm:pass" and events(fleet)[-1].severity == "info"


def test_callbacks_see_committed_new_events(fleet: Database) -> None:
    seen: list[tuple[list[int], int]] = []

    def react(db: Database, ids: Sequence[int]) -> None:
        with db.reader() as session:  # another session: the events must already be committed
            count = len(session.execute(select(HealthEvent.id).where(HealthEvent.id.in_(ids))).all())
        seen.append((list(ids), count))

    def broken(db: Database, ids: Sequence[int]) -> None:
        raise RuntimeError("the reaction failed")

    on_ingested(fleet, broken)
    on_ingested(fleet, react)
    on_ingested(fleet, react)  # registering twice keeps one
    report = ingest(fleet, fixture("kern.log"), "xid", OPERATOR)
    ingest(fleet, fixture("kern.log"), "xid", OPERATOR)  # nothing new: no call
    remove_ingested_callback(fleet, react)
    remove_ingested_callback(fleet, broken)
    assert fleet.ingest_reactions == []
    assert seen == [(report.event_ids, 8)]


def test_rematch_after_the_inventory_learns_the_node(fleet: Database) -> None:
    report = ingest(fleet, fixture("alertmanager-firing.json"), "alertmanager", OPERATOR)
    assert len(report.unmatched) == 1
    with fleet.transaction() as session:  # the supplier's inventory catches up: the host gets its real name
        session.execute(update(Gpu).where(Gpu.node_id == node_id("SN05")).values(pci_bus_id=None))
    csv = NODES_CSV.replace(",gpu-05,", ",not-in-inventory,")
    assert import_nodes(fleet, csv, "fleet.csv", OPERATOR).applied
    seen: list[Sequence[int]] = []
    on_ingested(fleet, lambda db, ids: seen.append(ids))
    result = rematch(fleet, OPERATOR)
    assert (result.examined, result.matched, result.still_unmatched) == (1, 1, 0)
    event = next(e for e in events(fleet) if e.id == report.unmatched[0].event_id)
    assert event.node_id == node_id("SN05") and event.gpu_index == 0 and event.processed_at is None
    assert "unmatched" not in event.data and seen == [[event.id]]
    assert rematch(fleet, OPERATOR).examined == 0


def test_list_filters_and_pages(fleet: Database) -> None:
    ingest(fleet, fixture("kern.log"), "xid", OPERATOR)
    ingest(fleet, fixture("alertmanager-firing.json"), "alertmanager", OPERATOR)
    everything = list_events(fleet, VIEWER, limit=1000).items
    assert len(everything) == 11 and everything[0]["id"] > everything[-1]["id"]
    unmatched = list_events(fleet, VIEWER, EventFilter(unmatched=True)).items
    assert {u["subject"].split()[0] for u in unmatched} == {"unknown-host-7", "not-in-inventory"}
    mine = list_events(fleet, VIEWER, EventFilter(node="gpu-03")).items
    assert {i["code"] for i in mine} == {"xid:13", "sxid:12028", "sxid:20034", "xid:79"}
    assert mine[0]["node"] == {"id": node_id("SN03"), "hostname": "gpu-03", "serial": "SN03"}
    alerts = list_events(fleet, VIEWER, EventFilter(source="alertmanager", severity="critical")).items
    assert len(alerts) == 2
    page = list_events(fleet, VIEWER, limit=4)
    rest = list_events(fleet, VIEWER, limit=100, before=page.next_before)
    assert len(page.items) == 4 and len(rest.items) == 7 and rest.next_before is None
    with pytest.raises(InvalidInput, match="source"):
        list_events(fleet, VIEWER, EventFilter(source="carrier-pigeon"))


def test_roles_and_tenants(fleet: Database) -> None:
    with pytest.raises(Forbidden):
        ingest(fleet, fixture("kern.log"), "xid", VIEWER)
    tenant = Actor(name="t", role=Role.ADMIN, tenant_id=1)
    with pytest.raises(Forbidden):
        ingest(fleet, fixture("kern.log"), "xid", tenant)
    with pytest.raises(Forbidden):
        list_events(fleet, tenant)
    with pytest.raises(Forbidden):
        rematch(fleet, VIEWER)
    assert ingest(fleet, fixture("kern.log"), "xid", ADMIN).accepted == 8


def test_unknown_formats_are_refused(fleet: Database) -> None:
    with pytest.raises(InvalidInput, match="cannot tell the format"):
        ingest(fleet, "hello\nworld\n", "auto", OPERATOR)
    with pytest.raises(InvalidInput, match="unknown format"):
        ingest(fleet, "x", "syslog", OPERATOR)
    assert events(fleet) == []


def test_a_failed_write_leaves_nothing_behind(fleet: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpufleet.health import ingest as health_ingest

    def explode(*_args: Any) -> dict[str, int]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(health_ingest, "insert_events", explode)
    with pytest.raises(RuntimeError):
        ingest(fleet, fixture("nvidia-smi-h100.xml"), "nvidia-smi", OPERATOR, node="gpu-01")
    with fleet.reader() as session:
        assert session.execute(select(Gpu.pci_bus_id).where(Gpu.serial == "G01-0")).scalar() is None
    assert events(fleet) == []


def test_ingest_file_reads_from_disk(fleet: Database, tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(fixture("kern.log").encode() + b"\xff\xfe garbage\n")
    report = ingest_file(fleet, path, "auto", OPERATOR)
    assert report.accepted == 8 and report.source == str(path)


def test_nothing_reacts_to_an_ingest_unless_a_composition_root_attached_it(fleet: Database) -> None:
    from gpufleet.api.app import create_app
    from gpufleet.remediation.react import attach, react

    assert fleet.ingest_reactions == []  # importing the app and the reaction registered nothing
    create_app(fleet)  # the API's composition root attaches the reaction to the database it serves
    assert fleet.ingest_reactions == [react]
    attach(fleet)  # attaching again keeps one
    assert fleet.ingest_reactions == [react]
    assert ingest(fleet, fixture("kern.log"), "xid", OPERATOR).accepted == 8
    with fleet.reader() as session:  # the reaction opened the fatal Xids' cases within the ingest
        assert session.execute(select(func.count()).select_from(RemediationCase)).scalar_one() > 0


def test_a_body_larger_than_one_statement_batch_is_stored_whole_and_once(fleet: Database, clock: ManualClock) -> None:
    from gpufleet.health.store import SQLITE_BATCH

    start = clock.now() - timedelta(hours=1)
    count = SQLITE_BATCH + 500
    lines = [
        f"{(start + timedelta(milliseconds=i)).isoformat()} gpu-01 kernel: NVRM: Xid (PCI:0000:18:00): 43, pid={i}"
        for i in range(count)
    ]
    body = "\n".join(lines) + "\n"
    report = ingest(fleet, body, "xid", OPERATOR)
    assert (report.accepted, report.duplicates, report.problems) == (count, 0, [])
    again = ingest(fleet, body, "xid", OPERATOR)
    assert (again.accepted, again.duplicates) == (0, count)
    stored = events(fleet)
    assert len(stored) == count and stored[0].observed_at == start and stored[-1].data["from"] == "api"
    with fleet.reader() as session:  # times are stored as every other write stores them, so ranges compare right
        later = session.execute(
            select(HealthEvent.id).where(HealthEvent.observed_at >= start + timedelta(milliseconds=count - 10))
        ).all()
    assert len(later) == 10


def test_the_reaction_is_handed_what_the_ingest_stored(fleet: Database) -> None:
    from gpufleet.health.ingest import NewEvents

    seen: list[Any] = []
    on_ingested(fleet, lambda db, ids: seen.append(ids))
    report = ingest(fleet, fixture("kern.log"), "xid", OPERATOR)
    (handed,) = seen
    assert isinstance(handed, NewEvents) and list(handed) == report.event_ids
    stored = {e.id: e for e in events(fleet)}
    pending = {i for i, e in stored.items() if e.processed_at is None and e.node_id is not None}
    assert set(handed.facts) == pending and pending
    for event_id, fact in handed.facts.items():
        e = stored[event_id]
        assert (fact.node_id, fact.code, fact.severity, fact.status, fact.gpu_index, fact.observed_at) == (
            e.node_id,
            e.code,
            e.severity,
            e.status,
            e.gpu_index,
            e.observed_at,
        )


def test_an_ingest_that_gets_no_turn_is_refused_as_busy_and_stores_nothing(
    fleet: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpufleet.health import ingest as health_ingest
    from gpufleet.platform.errors import Busy

    monkeypatch.setattr(health_ingest, "INGEST_WAIT_S", 0.05)
    turns = fleet.ingest_turns
    held = [turns.acquire(timeout=1) for _ in range(turns.size)]
    try:
        with pytest.raises(Busy, match=f"{turns.size} ingests have been in progress"):
            ingest(fleet, fixture("kern.log"), "xid", OPERATOR)
        assert events(fleet) == []
    finally:
        for _ in held:
            turns.release()
    assert ingest(fleet, fixture("kern.log"), "xid", OPERATOR).accepted == 8


def test_ingest_concurrency_comes_from_the_environment_or_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpufleet.platform.database import ingest_concurrency

    monkeypatch.delenv("GPUFLEET_INGEST_CONCURRENCY", raising=False)
    assert (ingest_concurrency("sqlite"), ingest_concurrency("postgresql")) == (2, 8)
    monkeypatch.setenv("GPUFLEET_INGEST_CONCURRENCY", "5")
    assert ingest_concurrency("sqlite") == 5
    monkeypatch.setenv("GPUFLEET_INGEST_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="GPUFLEET_INGEST_CONCURRENCY must be a whole number of 1 or more, not '0'"):
        ingest_concurrency("sqlite")


@pytest.mark.parametrize("probe_max", [0, 1000])
def test_nodes_are_found_by_id_serial_or_hostname_however_many_are_named(
    fleet: Database, monkeypatch: pytest.MonkeyPatch, probe_max: int
) -> None:
    from gpufleet.health import store as health_store

    monkeypatch.setattr(health_store, "PROBE_MAX", probe_max)  # PostgreSQL: ids probed one by one, or by the planner
    lines = [
        {"node": ref, "code": "x", "severity": "info", "observed_at": "2026-03-02T08:00:00Z", "fingerprint": ref}
        for ref in (node_id("SN01"), "SN02", "gpu-03", "nowhere")
    ]
    report = ingest(fleet, "\n".join(json.dumps(line) for line in lines), "json", OPERATOR)
    assert [u.reason for u in report.unmatched] == ["unknown node 'nowhere'"]
    assert {e.node_id for e in events(fleet) if e.node_id} == {node_id("SN01"), node_id("SN02"), node_id("SN03")}


def test_bulk_times_are_the_text_the_model_writes() -> None:
    """SQLite compares times as text: the bulk insert's own formatting must agree with the model's to the character."""
    from datetime import UTC, datetime, timezone

    from gpufleet.health.store import _MODEL_TIME, _sqlite_time

    for moment in (
        datetime(2026, 12, 2, 4, 3, 19, 123456, tzinfo=UTC),
        datetime(2026, 12, 2, 4, 3, 19, tzinfo=UTC),
        datetime(999, 1, 1, tzinfo=UTC),
        datetime(2026, 12, 2, 9, 33, 19, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ):
        assert _sqlite_time(moment) == _MODEL_TIME(moment), moment


def test_evidence_any_json_number_can_hold_is_kept(fleet: Database) -> None:
    """A user's event data is stored as sent, integers beyond 64 bits and non-ASCII text included."""
    observed = (fleet.clock.now() - timedelta(minutes=1)).isoformat()
    data = {"counter": 2**70, "site": "Zürich"}
    body = {"node": "gpu-01", "code": "xid:43", "severity": "info", "observed_at": observed, "data": data}
    report = ingest(fleet, json.dumps(body), "json", OPERATOR)
    assert report.accepted == 1, report.problems
    assert data.items() <= events(fleet)[0].data.items()
