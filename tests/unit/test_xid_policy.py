"""The shipped health policy: built from NVIDIA's Xid catalog, reading related codes and repeats, and overridable."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gpufleet.domain.xid_policy import (
    LADDER_ORDER,
    Action,
    Drain,
    Kind,
    Owner,
    PolicyError,
    Seen,
    apply_overrides,
    check_override,
    classify,
    read_policy,
    repeat_escalation,
)
from gpufleet.remediation.policy import base_policy, policy_document

POLICY = base_policy()


def test_the_policy_has_a_version_and_covers_the_catalogs_codes() -> None:
    assert POLICY.version == "2026.1"
    xids = {c for c in POLICY.codes if c.startswith("xid:")}
    # The catalog ships 109 Xid codes; each keeps NVIDIA's own resolution buckets beside our reading of them.
    assert len(xids) == 109
    for code in xids:
        assert set(POLICY.codes[code].catalog) == {"immediate", "investigatory", "gpus"}, code


@pytest.mark.parametrize(
    ("code", "action", "kind", "owner"),
    [
        ("xid:13", Action.RESTART_APP, Kind.WORKLOAD, Owner.CUSTOMER),
        ("xid:31", Action.RESTART_APP, Kind.WORKLOAD, Owner.CUSTOMER),
        ("xid:79", Action.REBOOT, Kind.HARDWARE, Owner.SUPPLIER),
        ("xid:119", Action.RESET_GPU, Kind.SOFTWARE, Owner.US),
        ("xid:64", Action.RESET_GPU, Kind.HARDWARE, Owner.SUPPLIER),
        ("xid:63", Action.NONE, Kind.HARDWARE, Owner.SUPPLIER),
        ("xid:54", Action.INSPECT, Kind.HARDWARE, Owner.US),
        ("xid:142", Action.RMA, Kind.HARDWARE, Owner.SUPPLIER),
        ("xid:78", Action.REIMAGE, Kind.SOFTWARE, Owner.US),
    ],
)
def test_catalog_actions_become_ours(code: str, action: Action, kind: Kind, owner: Owner) -> None:
    rule = POLICY.codes[code]
    assert (rule.action, rule.kind, rule.owner) == (action, kind, owner)


def test_xid_48_alone_resets_the_gpu_at_once() -> None:
    verdict = classify(POLICY, [Seen("xid:48", gpu_index=3)])
    assert verdict.action is Action.RESET_GPU and verdict.drain is Drain.IMMEDIATE
    assert verdict.kind is Kind.HARDWARE and verdict.gpu_index == 3 and verdict.fatal


@pytest.mark.parametrize("other", ["xid:63", "xid:64"])
def test_xid_48_with_63_or_64_drains_then_resets(other: str) -> None:
    verdict = classify(POLICY, [Seen("xid:48"), Seen(other)])
    assert verdict.action is Action.RESET_GPU and verdict.drain is Drain.GRACEFUL
    assert any("row remapping" in r for r in verdict.reasons)


def test_xid_45_follows_the_other_codes_and_acts_alone() -> None:
    alone = classify(POLICY, [Seen("xid:45")])
    assert alone.action is Action.RESTART_APP and alone.codes == ("xid:45",)
    together = classify(POLICY, [Seen("xid:45"), Seen("xid:79")])
    assert together.action is Action.REBOOT and together.codes == ("xid:79",)
    assert any("xid:45 follows xid:79" in r for r in together.reasons)


def test_the_strongest_code_decides_and_any_hardware_code_makes_it_hardware() -> None:
    verdict = classify(POLICY, [Seen("xid:13"), Seen("xid:79")])
    assert verdict.action is Action.REBOOT and verdict.kind is Kind.HARDWARE
    software = classify(POLICY, [Seen("xid:13")])
    assert software.kind is Kind.WORKLOAD and software.owner is Owner.CUSTOMER


def test_informational_resolved_and_unknown_low_severity_codes_open_nothing() -> None:
    assert not classify(POLICY, [Seen("xid:63")]).actionable
    assert not classify(POLICY, [Seen("xid:79", resolved=True)]).actionable
    assert not classify(POLICY, [Seen("alert:SomethingNew", severity="warning")]).actionable
    # A critical alert the policy does not list still gets the prefix's default.
    assert classify(POLICY, [Seen("alert:SomethingNew", severity="critical")]).action is Action.REBOOT
    assert classify(POLICY, [Seen("xid:999", severity="critical")]).action is Action.RESET_GPU


def test_codes_that_may_not_act_never_act_alone_or_together() -> None:
    """``may_act`` lets the reaction skip classifying ignored telemetry, so it must never turn away a set of codes that
    classify would act on, related codes and prefixes included."""
    extra = [Seen("alert:SomethingNew", sev) for sev in ("info", "warning", "critical")]
    seen = [Seen(code, sev) for code in POLICY.codes for sev in ("info", "warning", "critical")] + extra
    quiet = [s for s in seen if not POLICY.may_act(s.code, s.severity)]
    assert {"xid:43", "xid:63", "xid:92"} <= {s.code for s in quiet}
    assert not POLICY.may_act("alert:SomethingNew", "warning") and POLICY.may_act("alert:SomethingNew", "critical")
    for i, first in enumerate(quiet):
        for second in quiet[i:]:
            assert not classify(POLICY, [first, second]).actionable, (first, second)
    assert all(POLICY.may_act(s.code, s.severity) for s in seen if classify(POLICY, [s]).actionable)


def test_five_fatal_xids_in_24_hours_go_to_the_supplier() -> None:
    assert repeat_escalation(POLICY, {"fatal-xids-24h": 4}) is None
    rule = repeat_escalation(POLICY, {"fatal-xids-24h": 5})
    assert rule is not None and rule.action is Action.RMA and rule.window == timedelta(hours=24)


def test_the_ladder_runs_from_restart_to_rma_with_backoff() -> None:
    assert [s.action for s in POLICY.ladder] == list(LADDER_ORDER)
    assert POLICY.backoff.delay(1) == timedelta(seconds=60)
    assert POLICY.backoff.delay(2) == timedelta(seconds=120)
    assert POLICY.backoff.delay(30) == timedelta(seconds=1800)


def test_overrides_change_a_code_or_a_setting_and_are_checked() -> None:
    key, value = check_override("code:xid:79", {"action": "rma"}, POLICY)
    assert (key, value) == ("code:xid:79", {"action": "rma"})
    changed = apply_overrides(POLICY, [(key, value), ("setting:dry_run", True)])
    assert changed.codes["xid:79"].action is Action.RMA
    assert changed.codes["xid:79"].kind is Kind.HARDWARE  # fields not named keep their value
    assert changed.settings.dry_run and not POLICY.settings.dry_run
    with pytest.raises(PolicyError, match="action"):
        check_override("code:xid:79", {"action": "pray"}, POLICY)
    with pytest.raises(PolicyError, match="unknown setting"):
        check_override("setting:nonsense", 1, POLICY)
    with pytest.raises(PolicyError, match="cluster_budget_fraction"):
        check_override("setting:cluster_budget_fraction", 3, POLICY)
    with pytest.raises(PolicyError, match="key"):
        check_override("xid:79", {"action": "rma"}, POLICY)


def test_a_broken_policy_document_names_the_field() -> None:
    document = policy_document(POLICY)
    document["ladder"] = document["ladder"][:-1]
    with pytest.raises(PolicyError, match="ladder"):
        read_policy(document)
    with pytest.raises(PolicyError, match="version"):
        read_policy({"codes": {}})
    with pytest.raises(PolicyError, match=r"codes\.xid:1\.kind"):
        read_policy({"version": "x", "codes": {"xid:1": {"action": "none", "owner": "us"}}})


def test_the_policy_document_reads_back_to_the_same_policy() -> None:
    again = read_policy(policy_document(POLICY))
    assert again.codes == POLICY.codes
    assert again.ladder == POLICY.ladder and again.settings == POLICY.settings and again.related == POLICY.related
