"""Health telemetry parsers on fixtures written from the vendors' format descriptions, and on broken input."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpufleet.adapters.formats.alertmanager import parse_alertmanager
from gpufleet.adapters.formats.dcgm import parse_dcgm
from gpufleet.adapters.formats.health_json import gpu_ref, parse_health_json
from gpufleet.adapters.formats.health_observation import GpuRef, canonical_pci, parse_iso
from gpufleet.adapters.formats.nvidia_smi import parse_nvidia_smi
from gpufleet.adapters.formats.xid import parse_xid_log, xid_severity

FIXTURES = Path(__file__).parents[1] / "fixtures" / "health"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_pci_addresses_from_the_kernel_and_nvidia_smi_agree() -> None:
    assert canonical_pci("00000000:2A:00.0") == canonical_pci("0000:2a:00") == canonical_pci("PCI:0000:2a:00")
    assert canonical_pci("2a:00.1") == "0000:2a:00.1"
    assert canonical_pci("not-pci") is None and canonical_pci(None) is None


def test_iso_times_with_offsets_nanoseconds_and_none() -> None:
    assert parse_iso("2026-01-27T10:00:00.123456789Z") == datetime(2026, 1, 27, 10, 0, 0, 123456, tzinfo=UTC)
    assert parse_iso("2026-01-27T11:00:00+0100") == datetime(2026, 1, 27, 10, tzinfo=UTC)
    assert parse_iso("2026-01-27 10:00:00") == datetime(2026, 1, 27, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_iso("yesterday")


# ---------------------------------------------------------------------------------------------------------------
# Kernel log


def test_xid_lines_in_both_driver_formats_and_sxid() -> None:
    parsed = parse_xid_log(fixture("kern.log"), NOW)
    codes = [(o.line, o.code, o.node) for o in parsed.observations]
    assert codes == [
        (2, "xid:79", "gpu-01"),
        (4, "xid:48", "gpu-02"),  # older driver: no "PCI:"
        (5, "xid:63", "gpu-02"),
        (6, "xid:13", "gpu-03"),
        (7, "sxid:12028", "gpu-03"),
        (8, "sxid:20034", "gpu-03"),
        (10, "xid:154", "gpu-04"),
        (11, "xid:79", "unknown-host-7"),
    ]
    first = parsed.observations[0]
    assert first.gpu == GpuRef(pci_bus_id="0000:18:00.0")
    assert first.observed_at == datetime(2026, 3, 2, 8, 41, 9, tzinfo=UTC)
    assert first.data["pid"] == "1234" and first.data["process"] == "python3" and first.severity == "critical"
    assert parsed.observations[2].data.get("pid") is None  # pid='<unknown>'
    assert parsed.observations[6].data["recovery_action"] == "Node Reboot Required"
    non_fatal, fatal = parsed.observations[4], parsed.observations[5]
    assert (non_fatal.severity, fatal.severity) == ("warning", "critical")
    assert non_fatal.gpu is None and non_fatal.data["nvswitch"] == "nvidia-nvswitch2"
    assert parsed.ignored == 2 and parsed.readings == 8
    assert [(p.line, p.where) for p in parsed.problems] == [(9, "line 9")]
    assert "names an Xid" in parsed.problems[0].message


def test_xid_times_from_journalctl_dmesg_and_uptime_only() -> None:
    parsed = parse_xid_log(fixture("journal-iso.log"), NOW)
    times = [o.observed_at for o in parsed.observations]
    assert times[:3] == [
        datetime(2026, 3, 2, 8, 50, 1, 120000, tzinfo=UTC),
        datetime(2026, 3, 2, 8, 50, 2, tzinfo=UTC),
        datetime(2026, 3, 2, 8, 51, tzinfo=UTC),
    ]
    uptime_only, bare = parsed.observations[3], parsed.observations[4]
    assert uptime_only.observed_at is None and uptime_only.key is not None and "9999.000100" in uptime_only.key
    assert bare.observed_at is None and bare.key is None and bare.node is None
    assert parsed.observations[0].node == "gpu-05" and parsed.observations[2].node is None


def test_syslog_year_is_the_one_before_now() -> None:
    parsed = parse_xid_log("Dec 31 23:59:00 h kernel: NVRM: Xid (PCI:0000:01:00): 79, x", NOW)
    assert parsed.observations[0].observed_at == datetime(2025, 12, 31, 23, 59, tzinfo=UTC)


def test_given_node_wins_over_the_syslog_host() -> None:
    parsed = parse_xid_log(fixture("kern.log"), NOW, node="ch-1")
    assert {o.node for o in parsed.observations} == {"ch-1"}


def test_xid_severity_follows_the_catalog_actions() -> None:
    assert xid_severity(79) == "critical" and xid_severity(48) == "critical"
    assert xid_severity(13) == "warning" and xid_severity(45) == "warning" and xid_severity(999) == "warning"
    assert xid_severity(63) == "info"


def test_a_huge_or_binary_line_is_a_problem_not_a_crash() -> None:
    text = "NVRM: Xid (PCI:0000:01:00): 79, " + "x" * 10_000 + "\n\x00\xff NVRM: Xid (PCI:zz): 1,\n"
    parsed = parse_xid_log(text, NOW)
    assert [p.line for p in parsed.problems] == [1, 2] and not parsed.observations


# ---------------------------------------------------------------------------------------------------------------
# nvidia-smi


def test_nvidia_smi_current_driver_faults() -> None:
    parsed = parse_nvidia_smi(fixture("nvidia-smi-h100.xml"), node="gpu-01")
    assert parsed.readings == 1 and not parsed.problems
    assert [g.serial for g in parsed.gpus] == ["G01-0", "G01-1"]
    assert parsed.gpus[1].pci_bus_id == "0000:2a:00.0" and parsed.gpus[1].index == 1
    found = {o.code: o for o in parsed.observations}
    assert set(found) == {"ecc:uncorrectable", "row-remap:pending", "temp:slowdown", "throttle:hw_slowdown"}
    assert all(o.gpu is not None and o.gpu.serial == "G01-1" for o in parsed.observations)
    ecc = found["ecc:uncorrectable"]
    assert ecc.severity == "critical" and ecc.data["volatile_uncorrectable"] == 2
    assert ecc.data["aggregate_uncorrectable"] == 5
    assert found["row-remap:pending"].data["uncorrectable_rows"] == 2
    assert found["temp:slowdown"].data["gpu_temp_c"] == 90.0
    assert ecc.observed_at == datetime(2026, 3, 2, 8, 58, tzinfo=UTC) and ecc.node == "gpu-01"


def test_nvidia_smi_older_driver_elements() -> None:
    parsed = parse_nvidia_smi(fixture("nvidia-smi-legacy.xml"))
    codes = sorted(o.code for o in parsed.observations)
    assert codes == [
        "ecc:uncorrectable",
        "page-retirement:limit",
        "page-retirement:pending",
        "temp:shutdown",
        "throttle:hw_thermal_slowdown",
    ]
    assert parsed.gpus[0].serial is None  # "N/A"


def test_a_healthy_reading_counts_but_yields_nothing() -> None:
    text = fixture("nvidia-smi-h100.xml")
    healthy = text.split('<gpu id="00000000:2A:00.0">')[0] + "</nvidia_smi_log>\n"
    parsed = parse_nvidia_smi(healthy)
    assert parsed.readings == 1 and not parsed.observations and not parsed.problems


def test_xml_bomb_is_refused_fast() -> None:
    started = time.perf_counter()
    parsed = parse_nvidia_smi(fixture("nvidia-smi-bomb.xml"))
    assert time.perf_counter() - started < 5
    assert not parsed.observations and parsed.problems
    assert "refused" in parsed.problems[0].message


def test_entity_declared_without_doctype_bracket_is_refused() -> None:
    text = '<nvidia_smi_log><!ENTITY x "y"><timestamp>&x;</timestamp></nvidia_smi_log>'
    parsed = parse_nvidia_smi(text)
    assert not parsed.readings and "refused" in parsed.problems[0].message


def test_one_broken_document_does_not_hide_the_next() -> None:
    good = fixture("nvidia-smi-h100.xml")
    broken = good.replace("<serial>G01-1</serial>", "<serial>G01-1</seria>")
    parsed = parse_nvidia_smi(broken + good)
    assert parsed.readings == 1 and len(parsed.observations) == 4
    assert len(parsed.problems) == 1 and parsed.problems[0].where == "document 1"
    assert parsed.problems[0].line == broken.splitlines().index("\t\t<serial>G01-1</seria>") + 1


def test_truncated_and_foreign_xml() -> None:
    truncated = parse_nvidia_smi(fixture("nvidia-smi-h100.xml")[:3000])
    assert "never ends" in truncated.problems[0].message
    foreign = parse_nvidia_smi("<html><body>502 Bad Gateway</body></html>")
    assert "no <nvidia_smi_log>" in foreign.problems[0].message


# ---------------------------------------------------------------------------------------------------------------
# DCGM


def test_dcgm_3x_shape() -> None:
    parsed = parse_dcgm(fixture("dcgm3-fail.json"))
    assert not parsed.problems and parsed.readings == 1
    codes = [(o.code, o.severity, o.gpu.index if o.gpu else None) for o in parsed.observations]
    assert codes == [
        ("dcgm:error-28", "warning", 0),
        ("dcgm:error-28", "warning", 1),
        ("dcgm:DCGM_FR_VOLATILE_DBE_DETECTED", "critical", 1),
    ]
    dbe = parsed.observations[2]
    assert dbe.gpu is not None and dbe.gpu.serial == "G01-1"
    assert dbe.data["test"] == "GPU Memory" and dbe.data["shape"] == "3.x" and dbe.data["dcgm_version"] == "3.3.5"


def test_dcgm_4x_shape_with_entities_and_severity() -> None:
    parsed = parse_dcgm(fixture("dcgm4-fail.json"), node="gpu-02")
    assert not parsed.problems
    pcie, memtest = parsed.observations
    assert (pcie.code, pcie.gpu, pcie.data["error_severity"]) == (
        "dcgm:error-3",
        GpuRef(index=1, serial="G02-1"),
        "ISOLATE",
    )
    assert pcie.data["error_category"] == "DCGM_FR_EC_HARDWARE_PCIE" and pcie.data["dcgm_version"] == "4.1.1"
    assert (memtest.code, memtest.data["error_severity"], memtest.node) == ("dcgm:error-50", "RESET", "gpu-02")


def test_dcgm_pass_is_the_proof_of_health() -> None:
    parsed = parse_dcgm(fixture("dcgm4-pass.json"))
    assert [(o.code, o.severity, o.gpu) for o in parsed.observations] == [("dcgm:pass", "info", None)]


def test_dcgm_bad_documents_are_reported_each_at_its_line() -> None:
    good = json.dumps(json.loads(fixture("dcgm4-pass.json")))
    text = "\n".join([good, '{"something": "else"}', "{broken", good])
    parsed = parse_dcgm(text)
    assert parsed.readings == 2
    assert [(p.line, p.where) for p in parsed.problems] == [(3, "line 3"), (2, "document 2")]
    assert parse_dcgm('{"DCGM Diagnostic": {"test_categories": 7}}').problems


# ---------------------------------------------------------------------------------------------------------------
# Alertmanager


def test_alertmanager_firing_payload() -> None:
    parsed = parse_alertmanager(fixture("alertmanager-firing.json"))
    xid, temp, unknown = parsed.observations
    assert (xid.code, xid.node, xid.severity, xid.status) == ("xid:79", "gpu-03", "critical", "firing")
    assert xid.gpu == GpuRef(index=2, uuid="GPU-5f7d0000-0000-4000-8000-000000000032")
    assert xid.key == "alertmanager:b7c1a2d3e4f50617:2026-03-02T08:55:00.123456789Z:firing"
    assert (temp.code, temp.node, temp.severity) == ("alert:GPUHighTemperature", "gpu-04", "warning")  # instance
    assert unknown.node == "not-in-inventory"
    assert [(p.where, p.line) for p in parsed.problems] == [("payload 1 alerts[3].startsAt", 1)]


def test_alertmanager_resolution_is_a_new_observation_of_the_same_alert() -> None:
    firing = parse_alertmanager(fixture("alertmanager-firing.json")).observations[1]
    resolved = parse_alertmanager(fixture("alertmanager-resolved.json")).observations[0]
    assert resolved.status == "resolved" and resolved.observed_at == datetime(2026, 3, 2, 8, 59, tzinfo=UTC)
    assert resolved.data["fingerprint"] == firing.data["fingerprint"] and resolved.key != firing.key


def test_alertmanager_rejects_other_versions_and_bad_alerts() -> None:
    payload = {"version": "3", "alerts": []}
    assert "only 4" in parse_alertmanager(json.dumps(payload)).problems[0].message
    bad = {"version": "4", "status": "firing", "alerts": [7, {"labels": {}}, {"labels": {"a": "b"}, "status": "x"}]}
    problems = parse_alertmanager(json.dumps(bad)).problems
    assert [p.where for p in problems] == ["payload 1 alerts[0]", "payload 1 alerts[1]", "payload 1 alerts[2].status"]


# ---------------------------------------------------------------------------------------------------------------
# Generic JSON


def test_generic_json_events_and_their_field_errors() -> None:
    parsed = parse_health_json(fixture("events.jsonl"))
    assert [o.code for o in parsed.observations] == ["fan:failed", "psu:degraded", "xid:79", "clock:skew", "old:news"]
    assert parsed.observations[0].key == "json:bmc-gpu06-fan3-1" and parsed.observations[0].gpu == GpuRef(index=1)
    assert parsed.observations[1].observed_at == datetime(2026, 3, 2, 7, 31, tzinfo=UTC)
    where = sorted(p.where for p in parsed.problems)
    assert where == ["item 4.code", "item 4.colour", "item 4.observed_at", "item 4.severity", "line 5"]
    assert {p.line for p in parsed.problems} == {4, 5}


def test_generic_json_array_points_at_item_lines() -> None:
    item = '{"node": "a", "code": "x", "severity": "info", "observed_at": "2026-03-02T08:00:00Z"}'
    text = f'[\n  {item},\n  {{"node": 5}}\n]'
    parsed = parse_health_json(text)
    assert len(parsed.observations) == 1 and {p.line for p in parsed.problems} == {3}


def test_gpu_named_any_way() -> None:
    assert gpu_ref(3) == GpuRef(index=3) and gpu_ref("3") == GpuRef(index=3)
    assert gpu_ref("0000:3b:00.0") == GpuRef(pci_bus_id="0000:3b:00.0")
    assert gpu_ref("GPU-abc") == GpuRef(uuid="GPU-abc") and gpu_ref("1652922012345") == GpuRef(serial="1652922012345")
    assert gpu_ref("PN-77") == GpuRef(serial="PN-77")
    with pytest.raises(ValueError):
        gpu_ref(True)


def test_unreadable_json_body_is_one_problem() -> None:
    parsed = parse_health_json('{\n  "node": "a",\n  "code": \n}')
    assert len(parsed.problems) == 1 and parsed.problems[0].line == 4
