"""The agent's collectors against fake nvidia-smi, dcgmi and journalctl executables, log files and a kmsg stream."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gpufleet.adapters.host import gpu_tools
from gpufleet.adapters.host.kernel_log import FileLog, JournalLog, KmsgLog
from gpufleet.agent.spool import Spool

FIXTURES = Path(__file__).parents[1] / "fixtures" / "health"
XID = "Mar  2 08:41:09 gpu-01 kernel: NVRM: Xid (PCI:0000:18:00): 79, pid=1234, GPU has fallen off the bus.\n"
OTHER = "Mar  2 08:41:10 gpu-01 kernel: usb 1-1: new high-speed USB device\n"


def fake_tool(folder: Path, name: str, stdout: Path | str | None = None, code: int = 0, stderr: str = "") -> Path:
    """An executable that prints a fixture (or text), records its arguments and exits with ``code``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = stdout.read_text() if isinstance(stdout, Path) else (stdout or "")
    script = folder / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"record = open({str(folder / (name + '.args'))!r}, 'a')\n"
        "record.write(' '.join(sys.argv[1:]) + '|' + os.environ.get('TZ', '') + '\\n')\n"
        f"sys.stdout.write({text!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({code})\n"
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_nvidia_smi_reading_runs_in_utc(tools: Path) -> None:
    fake_tool(tools, "nvidia-smi", FIXTURES / "nvidia-smi-h100.xml")
    assert gpu_tools.available("nvidia-smi")
    result = gpu_tools.nvidia_smi_xml()
    assert result.ok and "<nvidia_smi_log>" in result.output
    assert (tools / "nvidia-smi.args").read_text() == "-q -x|UTC\n"


def test_nvidia_smi_that_cannot_reach_the_driver(tools: Path) -> None:
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    fake_tool(tools, "nvidia-smi", message, code=9)
    result = gpu_tools.nvidia_smi_xml()
    assert not result.ok and message in result.error


def test_nvidia_smi_missing_or_printing_something_else(tools: Path) -> None:
    assert not gpu_tools.available("nvidia-smi")
    assert "not on PATH" in gpu_tools.nvidia_smi_xml().error
    fake_tool(tools, "nvidia-smi", "No devices were found\n")
    assert "no <nvidia_smi_log>" in gpu_tools.nvidia_smi_xml().error


def test_dcgm_diag_keeps_the_report_of_a_failing_run(tools: Path) -> None:
    fake_tool(tools, "dcgmi", FIXTURES / "dcgm4-fail.json", code=226)
    result = gpu_tools.dcgm_diag(3)
    assert result.ok and '"DCGM Diagnostic"' in result.output
    assert (tools / "dcgmi.args").read_text() == "diag -r 3 -j|UTC\n"
    fake_tool(tools, "dcgmi", "Error: unable to establish a connection to the specified host: localhost\n", code=255)
    failed = gpu_tools.dcgm_diag(1)
    assert not failed.ok and "unable to establish" in failed.error


def test_dcgm_diag_that_hangs_is_cut_off(tools: Path) -> None:
    script = tools / "dcgmi"
    script.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    script.chmod(0o755)
    result = gpu_tools.dcgm_diag(1, timeout=0.5)
    assert not result.ok and "did not finish" in result.error


def test_file_log_remembers_its_offset_and_follows_rotation(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_text(OTHER + XID)
    log, state = FileLog(path), {}
    assert log.read_new(state) == [XID.rstrip("\n")]
    assert log.read_new(state) == []
    with path.open("a") as handle:
        handle.write(XID.replace("08:41:09", "08:42:00") + XID.replace("08:41:09", "08:43:00")[:40])  # half a line
    assert [line[:15] for line in log.read_new(state)] == ["Mar  2 08:42:00"]
    with path.open("a") as handle:
        handle.write(XID.replace("08:41:09", "08:43:00")[40:])
    assert [line[:15] for line in log.read_new(state)] == ["Mar  2 08:43:00"]
    path.rename(tmp_path / "kern.log.1")  # logrotate: a new, shorter file takes the name
    path.write_text(XID.replace("08:41:09", "09:00:00"))
    assert [line[:15] for line in log.read_new(state)] == ["Mar  2 09:00:00"]
    assert FileLog(tmp_path / "missing.log").read_new({}) == []


def test_journal_uses_its_cursor_file_and_this_boot_first(tools: Path, tmp_path: Path) -> None:
    journal = "2026-03-02T08:50:01.120000+00:00 gpu-05 kernel: NVRM: Xid (PCI:0000:b9:00): 74, NVLink\n"
    fake_tool(tools, "journalctl", journal + "2026-03-02T08:50:02+00:00 gpu-05 kernel: e1000e: link up\n")
    cursor = tmp_path / "journal.cursor"
    log = JournalLog(cursor)
    assert log.read_new({}) == [journal.rstrip("\n")]
    cursor.write_text("s=abc")
    log.read_new({})
    calls = (tools / "journalctl.args").read_text().splitlines()
    assert calls[0].startswith(f"-k -o short-iso-precise --no-pager --cursor-file={cursor} -b")
    assert " -b" not in calls[1]  # after the first read, the cursor carries across reboots
    fake_tool(tools, "journalctl", "", code=2, stderr="Failed to open journal")
    with pytest.raises(OSError, match="journalctl exited 2"):
        log.read_new({})


def test_kmsg_records_become_timed_lines_once(tmp_path: Path) -> None:
    kmsg, stat, boot = tmp_path / "kmsg", tmp_path / "stat", tmp_path / "boot_id"
    stat.write_text("cpu  1 2 3\nbtime 1772441000\n")
    boot.write_text("boot-1\n")
    kmsg.write_text(
        "6,100,5000000,-;usb 1-1: new device\n"
        "3,101,8125437933,-;NVRM: Xid (PCI:0000:18:00): 79, pid=1234, GPU has fallen off the bus.\n"
        " SUBSYSTEM=pci\n"
    )
    log, state = KmsgLog("gpu-01", kmsg, stat, boot), {}
    lines = log.read_new(state)
    at = datetime.fromtimestamp(1772441000, UTC) + timedelta(microseconds=8125437933)
    stamp = at.isoformat().replace("+00:00", "Z")
    assert lines == [f"{stamp} gpu-01 kernel: NVRM: Xid (PCI:0000:18:00): 79, pid=1234, GPU has fallen off the bus."]
    assert state == {"boot": "boot-1", "seq": 101}
    assert log.read_new(state) == []
    boot.write_text("boot-2\n")  # after a reboot sequence numbers start again
    assert len(log.read_new(state)) == 1


def test_spool_is_ordered_atomic_capped_and_keeps_refused_entries(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "buffer", max_entries=3)
    first = spool.put("xid", XID, "gpu-01")
    for i in range(3):
        spool.put("json", f'{{"n": {i}}}', "gpu-01", request=7)
    pending = spool.pending()
    assert len(pending) == 3 and first not in pending  # the oldest went when the cap was passed
    entry = spool.load(pending[0])
    assert entry is not None and entry["request"] == 7 and len(entry["delivery"]) == 32
    assert spool.load(pending[0]) == entry  # the delivery id is fixed once written
    assert not list((tmp_path / "buffer" / "outbox").glob("*.tmp"))
    spool.reject(pending[0], "422: unreadable")
    assert [p.name for p in (tmp_path / "buffer" / "rejected").iterdir()] == [pending[0].name]
    (spool.outbox / "0-broken.json").write_text("{half")
    assert spool.load(spool.outbox / "0-broken.json") is None
    spool.write_state({"kernel": {"file": {"offset": 5}}})
    assert Spool(tmp_path / "buffer").read_state() == {"kernel": {"file": {"offset": 5}}}
    assert oct(os.stat(tmp_path / "buffer").st_mode & 0o777) == "0o700"
