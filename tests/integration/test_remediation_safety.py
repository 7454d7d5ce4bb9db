"""The brakes: blast-radius budgets, the circuit breaker and its reset, dry runs, overrides, and no repeated action
after a restart or across several controller processes. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gpufleet.adapters.db.models import Node, RemediationCase
from gpufleet.adapters.drivers.base import RepairAction
from gpufleet.adapters.drivers.simulated import SimulatedDriver
from gpufleet.health.ingest import ingest
from gpufleet.platform.clock import ManualClock
from gpufleet.platform.database import Database
from gpufleet.platform.errors import Forbidden, InvalidInput
from gpufleet.remediation.engine import Engine
from gpufleet.remediation.policy import revoke_override, set_override, show_policy
from gpufleet.remediation.react import attach, react_now, use_registry
from gpufleet.remediation.runtime import DbWork
from gpufleet.remediation.safety import breakers, reset_breaker, trip_breaker
from tests.factories import ADMIN, OPERATOR, VIEWER
from tests.integration.remediation_support import Harness, harness, node_id


@pytest.fixture
def h(db: Database, clock: ManualClock) -> Harness:
    return harness(db, clock)


def setting(h: Harness, name: str, value: Any, cluster: str | None = "east-frontier") -> int:
    view = set_override(h.db, OPERATOR, f"setting:{name}", value, f"test: {name}", cluster=cluster)
    h.engine.forget()
    return view.id


def test_the_cluster_budget_holds_cases_until_a_node_comes_back(h: Harness) -> None:
    setting(h, "cluster_budget_fraction", 0.1)
    setting(h, "cluster_budget_min", 1)
    for serial in ("E1", "E2"):
        h.break_node(serial, RepairAction.REBOOT, kind="software", remedy="restart_app")
        h.report(serial, "xid:13")
    h.run()
    first, second = h.case("E1"), h.case("E2")
    assert first.state != "detected"
    assert (second.state, second.held) == ("detected", "budget")
    assert h.node_state("E2") == "in_service"
    held = [s.detail for s in h.steps(second.id) if s.kind == "hold"]
    assert len(held) == 1 and "cluster east-frontier" in held[0] and "allows 1 at once" in held[0]
    h.settle(hours=2)
    assert h.case("E1").state == h.case("E2").state == "reintegrated"
    assert len([s for s in h.steps(second.id) if s.kind == "hold"]) == 1  # held once, noted once


def test_the_nvlink_domain_budget_is_its_own(db: Database, clock: ManualClock) -> None:
    h = harness(db, clock)
    with db.transaction() as session:
        from gpufleet.adapters.db.models import Cluster, NvlinkDomain

        cluster_id = session.execute(select(Cluster.id).where(Cluster.name == "west-fleet")).scalar_one()
        domain = NvlinkDomain(cluster_id=cluster_id, name="nvl72-a", kind="GB300-NVL72")
        session.add(domain)
        session.flush()
        for serial in ("W1", "W2", "W3", "W4"):
            session.get(Node, node_id(serial)).nvlink_domain_id = domain.id  # type: ignore[union-attr]
    setting(h, "cluster_budget_min", 10, cluster="west-fleet")
    for serial in ("W1", "W2"):
        h.break_node(serial, RepairAction.REBOOT, kind="software", remedy="restart_app")
        h.report(serial, "xid:13")
    h.run()
    held = h.case("W2")
    assert held.held == "budget"
    assert any("NVLink domain nvl72-a" in s.detail for s in h.steps(held.id))


def test_the_breaker_trips_shows_why_and_resets_only_with_a_reason(h: Harness) -> None:
    setting(h, "breaker_min", 3)
    setting(h, "breaker_fraction", 0.0)
    for serial in ("E1", "E2", "E3", "E4"):
        h.break_node(serial, RepairAction.REBOOT, kind="software", remedy="restart_app")
        h.report(serial, "xid:13")
    h.run()
    view = next(b for b in breakers(h.db, VIEWER) if b.cluster == "east-frontier")
    assert view.state == "open" and "3 case(s) opened" in (view.reason or "")
    held = [h.case(s) for s in ("E1", "E2", "E3", "E4") if h.case(s).held == "breaker"]
    assert held and all(h.node_state(s) == "in_service" for s in ("E3", "E4"))
    with pytest.raises(InvalidInput, match="reason"):
        reset_breaker(h.db, OPERATOR, "east-frontier", "  ")
    with pytest.raises(Forbidden):
        reset_breaker(h.db, VIEWER, "east-frontier", "checked")
    after = reset_breaker(h.db, OPERATOR, "east-frontier", "checked the alerts: four real faults")
    assert after.state == "closed" and after.reset_by == OPERATOR.name and after.reset_reason
    h.settle(hours=2)
    assert all(h.case(s).state == "reintegrated" for s in ("E1", "E2", "E3", "E4"))


def test_a_person_can_trip_the_breaker_for_a_change_window(h: Harness) -> None:
    view = trip_breaker(h.db, OPERATOR, "east-frontier", "fabric maintenance tonight")
    assert view.state == "open" and "fabric maintenance" in (view.reason or "")
    h.engine.forget()
    h.report("E5", "xid:79")
    h.run()
    assert h.case("E5").held == "breaker" and h.node_state("E5") == "in_service"


def test_a_dry_run_records_what_it_would_do_and_touches_nothing(h: Harness) -> None:
    setting(h, "dry_run", True)
    h.break_node("E6", RepairAction.RMA)
    h.report("E6", "xid:79", gpu=2)
    h.settle(hours=3)
    case = h.case("E6")
    assert (case.state, case.resolution, case.dry_run) == ("closed", "dry_run", True)
    would = [s.detail for s in h.steps(case.id) if s.kind == "dry_run"]
    assert would and "would quarantine host-e6" in would[0] and "reboot" in would[0]
    assert h.node_state("E6") == "in_service"
    assert h.world.node("east-frontier", "host-e6").schedulable


def test_overrides_apply_to_their_cluster_or_pool_only_and_revoke_cleanly(h: Harness) -> None:
    pool = set_override(
        h.db,
        OPERATOR,
        "code:xid:13",
        {"action": "reboot"},
        "serving pool reboots",
        cluster="west-fleet",
        pool="serving",
    )
    shown = show_policy(h.db, VIEWER, cluster="west-fleet", pool="serving")
    assert shown["codes"]["xid:13"]["action"] == "reboot" and shown["overrides"][0]["reason"] == "serving pool reboots"
    assert show_policy(h.db, VIEWER, cluster="west-fleet")["codes"]["xid:13"]["action"] == "restart_app"
    assert show_policy(h.db, VIEWER)["codes"]["xid:13"]["action"] == "restart_app"
    h.engine.forget()
    h.report("W1", "xid:13")
    h.run()
    assert h.case("W1").start_action == "reboot"
    revoke_override(h.db, OPERATOR, pool.id, "done")
    assert show_policy(h.db, VIEWER, cluster="west-fleet", pool="serving")["codes"]["xid:13"]["action"] == "restart_app"
    with pytest.raises(InvalidInput, match="reason"):
        set_override(h.db, OPERATOR, "setting:dry_run", True, "")
    with pytest.raises(InvalidInput, match="unknown"):
        set_override(h.db, OPERATOR, "setting:nonsense", True, "why")
    with pytest.raises(Forbidden):
        set_override(h.db, VIEWER, "setting:dry_run", True, "why")


class Crash(Exception):
    pass


def test_a_reboot_is_never_asked_twice_because_the_controller_restarted(db: Database, clock: ManualClock) -> None:
    h = harness(db, clock)
    calls: list[str] = []

    class CrashingAfterReboot(SimulatedDriver):
        def reboot(self, node: str, reason: str) -> None:
            calls.append(node)
            super().reboot(node, reason)
            if len(calls) == 1:
                raise Crash("the controller process died right after asking")

    h.registry.register("simulated", lambda target, _clock: CrashingAfterReboot(h.world, target.name))
    h.break_node("E7", RepairAction.REBOOT, kind="software", repair_minutes=6)
    h.report("E7", "alert:HostMaintenance")
    with pytest.raises(Crash):
        h.settle(hours=1)
    assert calls == ["host-e7"]
    case = h.case("E7")
    assert case.state == "repairing" and case.pending["op"] == "reboot:1" and case.pending["op_done"] is False
    # A new process: the old lease runs out, the case is picked up, the reboot is observed, not asked again.
    clock.advance(timedelta(minutes=6))
    fresh = Harness(db, clock, h.world, h.registry, Engine(h.registry, clock, owner="second-process"))
    fresh.settle(hours=2)
    assert calls == ["host-e7"]
    assert fresh.case("E7").state == "reintegrated"


def test_several_controller_processes_act_on_each_case_once(db: Database, clock: ManualClock) -> None:
    h = harness(db, clock, east=12)
    resets: list[str] = []
    lock = threading.Lock()

    class Counting(SimulatedDriver):
        def reset_gpu(self, node: str, gpu_index: int | None, reason: str) -> None:
            with lock:
                resets.append(node)
            super().reset_gpu(node, gpu_index, reason)

    h.registry.register("simulated", lambda target, _clock: Counting(h.world, target.name))
    setting(h, "cluster_budget_min", 20)
    setting(h, "breaker_min", 100)
    serials = [f"E{i}" for i in range(1, 13)]
    for serial in serials:
        h.break_node(serial, RepairAction.RESET, remedy="reset_gpu")
        h.report(serial, "xid:119")
    engines = [Engine(h.registry, clock, owner=f"process-{i}") for i in range(3)]
    errors: list[BaseException] = []

    def work(engine: Engine) -> None:
        try:
            for _ in range(4):
                with DbWork(db) as unit:
                    engine.run_pass(unit)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for _ in range(3):
        threads = [threading.Thread(target=work, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        clock.advance(timedelta(minutes=10))
    assert not errors
    assert sorted(resets) == sorted(f"host-{s.lower()}" for s in serials)
    with db.reader() as session:
        states = session.execute(select(RemediationCase.state)).scalars().all()
    assert len(states) == 12


def test_an_xid_arriving_through_ingest_quarantines_its_node_in_the_same_request(
    db: Database, clock: ManualClock
) -> None:
    h = harness(db, clock)
    use_registry(h.registry)
    attach(db)  # as the API app and the CLI do where they are assembled
    try:
        payload = {
            "version": "4",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {
                        "alertname": "GPUXidError",
                        "Hostname": "host-e8",
                        "xid": "79",
                        "gpu": "1",
                        "severity": "critical",
                    },
                    "annotations": {"summary": "GPU has fallen off the bus"},
                    "startsAt": clock.now().isoformat(),
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": "f79e8",
                }
            ],
        }
        report = ingest(db, json.dumps(payload), "alertmanager", OPERATOR)
        assert len(report.event_ids) == 1
        assert h.node_state("E8") == "diagnosing"  # quarantined, drained (idle) and diagnosing already
        case = h.case("E8")
        assert case.codes == ["xid:79"] and case.gpu_index == 1
        again = ingest(db, json.dumps(payload), "alertmanager", OPERATOR)
        assert again.duplicates == 1 and len(h.cases("E8")) == 1
        assert react_now(db, []) is None
    finally:
        use_registry(None)
    assert ADMIN.role > OPERATOR.role


def test_the_reaction_acts_on_evidence_that_changes_an_open_case_and_leaves_the_rest_to_the_pass(
    db: Database, clock: ManualClock
) -> None:
    from gpufleet.adapters.db.models import HealthEvent

    h = harness(db, clock)
    use_registry(h.registry)
    try:
        react_now(db, [i for i in h.report("E11", "xid:94") if i is not None])
        case = h.case("E11")
        assert case.start_action == "restart_app" and case.closed_at is None
        noise = [i for i in h.report("E11", "xid:43") if i is not None]
        react_now(db, noise)
        stronger = [i for i in h.report("E11", "xid:79") if i is not None]
        react_now(db, stronger)
        with db.reader() as session:
            rows = {
                e.id: (e.processed_at, e.case_id)
                for e in session.execute(select(HealthEvent.id, HealthEvent.processed_at, HealthEvent.case_id))
            }
        assert rows[stronger[0]][0] is not None and rows[stronger[0]][1] == case.id
        assert h.case("E11").start_action == "reboot"  # Xid 79 asks for more than the restart the case began with
        assert rows[noise[0]] == (None, None)  # changes nothing: attached by the next pass, not under the burst
        h.run()
        with db.reader() as session:
            attached = session.execute(select(HealthEvent.case_id).where(HealthEvent.id == noise[0])).scalar_one()
        assert attached == case.id and len(h.cases("E11")) == 1
    finally:
        use_registry(None)


def test_the_reaction_leaves_ignored_noise_to_the_next_pass(db: Database, clock: ManualClock) -> None:
    from gpufleet.adapters.db.models import HealthEvent

    h = harness(db, clock)
    use_registry(h.registry)
    try:
        noise = h.report("E10", "xid:43")
        hit = h.report("E11", "xid:79")
        react_now(db, [i for i in noise + hit if i is not None])
        with db.reader() as session:
            processed = dict(session.execute(select(HealthEvent.code, HealthEvent.processed_at)).all())
        assert processed["xid:79"] is not None and processed["xid:43"] is None
        assert h.node_state("E11") == "diagnosing"
        report = h.run()
        assert report.intake.evidence_only == 1 and not report.intake.opened
        with db.reader() as session:
            assert session.execute(select(HealthEvent.processed_at).where(HealthEvent.code == "xid:43")).scalar_one()
    finally:
        use_registry(None)


def test_a_case_the_reaction_opens_is_leased_as_written_so_no_other_process_claims_it(
    db: Database, clock: ManualClock
) -> None:
    from gpufleet.remediation import store

    h = harness(db, clock)
    ids = [i for i in h.report("E11", "xid:79") if i is not None]
    now = clock.now()
    with DbWork(db) as work:
        session = work.session()
        opened = h.engine.intake.process(session, now, h.engine.policies(session, now), ids=ids, lease_to="reactor-a")
    (case_id,) = opened.opened
    assert opened.leased[case_id].lease_owner == "reactor-a"
    with db.transaction() as session:  # due now, but held by the process that opened it
        assert store.claim_due(session, now, "controller-b", 10) == []
        assert store.claim(session, case_id, now, "controller-b") is None
    later = now + store.LEASE + timedelta(seconds=1)
    with db.transaction() as session:  # a lease that was never released runs out, and the case is taken up
        assert [c.id for c in store.claim_due(session, later, "controller-b", 10)] == [case_id]


@pytest.mark.parametrize("per_cluster", [False, True], ids=["one-policy", "overrides-per-cluster"])
def test_in_a_storm_the_reaction_leaves_faults_it_would_only_hold_to_the_pass(
    db: Database, clock: ManualClock, per_cluster: bool
) -> None:
    from gpufleet.adapters.db.models import HealthEvent
    from gpufleet.remediation.engine import SPENT_FOR

    h = harness(db, clock)
    setting(h, "cluster_budget_fraction", 0.1, cluster=None)
    setting(h, "cluster_budget_min", 1, cluster=None)
    if per_cluster:  # the policy is then read per node, by the intake
        setting(h, "breaker_window_minutes", 30, cluster="west-fleet")
    trip_breaker(db, OPERATOR, "west-fleet", "fabric maintenance tonight")
    use_registry(h.registry)

    def unprocessed(ids: list[int | None]) -> bool:
        with db.reader() as session:
            rows = session.execute(select(HealthEvent.processed_at).where(HealthEvent.id.in_(ids))).scalars().all()
        return all(at is None for at in rows)

    try:
        react_now(db, [i for i in h.report("E1", "xid:79") if i is not None])
        assert h.node_state("E1") == "diagnosing"  # the budget allows one node at once
        react_now(db, [i for i in h.report("E2", "xid:79") if i is not None])
        assert h.case("E2").held == "budget"  # found spent here, and remembered
        spent = h.report("E3", "xid:79")
        react_now(db, [i for i in spent if i is not None])
        assert h.cases("E3") == [] and unprocessed(spent)
        tripped = h.report("W1", "xid:79")
        react_now(db, [i for i in tripped if i is not None])
        assert h.cases("W1") == [] and unprocessed(tripped)
        h.run()  # the pass opens what the reaction left, held as it would have been
        assert (h.case("E3").held, h.case("W1").held) == ("budget", "breaker")
        assert h.node_state("E3") == h.node_state("W1") == "in_service"
        clock.advance(SPENT_FOR + timedelta(seconds=1))
        react_now(db, [i for i in h.report("E4", "xid:79") if i is not None])
        assert h.case("E4").held == "budget"  # looked at again once the memory of the spent budget ran out
    finally:
        use_registry(None)
