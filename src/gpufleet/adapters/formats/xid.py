"""Kernel log Xid and SXid lines, in both driver formats, out of syslog, journalctl, dmesg or raw kernel logs.

Recognised: ``NVRM: Xid (PCI:0000:01:00): 32, ...`` (newer drivers), ``NVRM: Xid (0000:3b:00): 79, ...`` (older
drivers, no "PCI:"), and NVSwitch ``SXid (PCI:0000:c6:00.0): 12028, Non-fatal, ...`` lines. Any other kernel line is
counted as ignored; a line that names an Xid but cannot be read is a problem with its line number.

Times, from what precedes the Xid: ISO 8601 (``journalctl -o short-iso[-precise]``), syslog ``Dec 23 23:30:56``
(the year is the one that puts the line at most a day after ``now``), ``dmesg -T`` ``[Mon Jan 27 10:00:00 2026]``.
A line with only seconds since boot (``[179.437933]``) has no wall-clock time: the uptime becomes its identity
(``key``) so a repeated delivery is still recognised, and ingest stamps it with the time it arrived.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from gpufleet.adapters.formats.health_observation import (
    CRITICAL,
    INFO,
    WARNING,
    GpuRef,
    Observation,
    Parsed,
    Problem,
    canonical_pci,
    clip,
    parse_iso,
)

SOURCE = "xid"
MAX_LINE = 8192

_XID = re.compile(r"NVRM: Xid \((?:PCI:)?([0-9a-fA-F:.]+)\): (\d+),?\s*(.*)$")
_SXID = re.compile(r"(nvidia-nvswitch\d*)?:?\s*SXid \((?:PCI:)?([0-9a-fA-F:.]+)\): (\d+),?\s*(.*)$")
_MENTION = re.compile(r"NVRM: Xid|SXid \(")
_ISO_PREFIX = re.compile(r"^\s*(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+(\S+)\s")
_SYSLOG_PREFIX = re.compile(r"^\s*([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s+(\S+)\s")
_DMESG_T = re.compile(r"\[\s*[A-Z][a-z]{2} ([A-Z][a-z]{2})\s+(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})\s*\]")
_UPTIME = re.compile(r"\[\s*(\d+\.\d+)\s*\]")
_PID = re.compile(r"\bpid=(\d+|'?<unknown>'?)")
_NAME = re.compile(r"\bname=([^,]+)")
_RECOVERY = re.compile(r"recovery action changed from \S+ \(([^)]*)\) to \S+ \(([^)]*)\)", re.IGNORECASE)
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, start=1)}
_NOT_A_HOST = frozenset({"kernel", "kernel:"})

# Severity is a hint for people reading the list; what to do about a code is the remediation policy's business.
# From NVIDIA's Xid catalog: immediate action IGNORE -> info, RESTART_APP (or none given) -> warning, any action on
# the GPU, the node or the hardware (reset, reboot, the Xid 48/154 and NVLink workflows...) -> critical. Xid 45
# follows other Xids, so alone it is only a warning.
_INFO_CODES = frozenset({37, 38, 43, 44, 63, 66, 67, 92, 93, 106, 107, 121, 137, 141, 152, 153, 157, 160, 161})
_CRITICAL_CODES = frozenset(
    {46, 48, 54, 62, 64, 74, 78, 79, 95, 109, 110, 119, 120, 136, 140, 142, 143, 151, 154, 155, 156, 158, 159}
    | set(range(144, 151))
)


def xid_severity(code: int) -> str:
    if code in _CRITICAL_CODES:
        return CRITICAL
    return INFO if code in _INFO_CODES else WARNING


def mentions_xid(line: str) -> bool:
    """Whether a kernel line is worth sending: the agent forwards only these."""
    return _MENTION.search(line) is not None


def _syslog_time(month: str, day: str, hh: str, mm: str, ss: str, frac: str | None, now: datetime) -> datetime:
    micro = int((frac or "0").ljust(6, "0")[:6])
    number = _MONTHS[month]
    for year in (now.year, now.year - 1):
        try:
            stamp = datetime(year, number, int(day), int(hh), int(mm), int(ss), micro, tzinfo=UTC)
        except ValueError:  # 29 February in a year without one
            continue
        if stamp <= now + timedelta(days=1):
            return stamp
    raise ValueError(f"no year puts {month} {day} before now")


def _prefix(prefix: str, now: datetime) -> tuple[datetime | None, str | None, str | None]:
    """Wall-clock time, host and uptime stamp found before the Xid text."""
    when: datetime | None = None
    host: str | None = None
    iso = _ISO_PREFIX.match(prefix)
    syslog = None if iso else _SYSLOG_PREFIX.match(prefix)
    if iso:
        when, host = parse_iso(iso.group(1)), iso.group(2)
    elif syslog and syslog.group(1) in _MONTHS:
        month, day, hh, mm, ss, frac, host = syslog.groups()
        when = _syslog_time(month, day, hh, mm, ss, frac, now)
    else:
        shown = _DMESG_T.search(prefix)
        if shown and shown.group(1) in _MONTHS:
            month, day, hh, mm, ss, year = shown.groups()
            when = datetime(int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
    if host is not None and (host.lower() in _NOT_A_HOST or host.endswith(":")):
        host = None
    uptime = _UPTIME.search(prefix)
    return when, host, uptime.group(1) if uptime else None


def _details(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    pid = _PID.search(text)
    if pid and "unknown" not in pid.group(1):
        found["pid"] = pid.group(1)
    name = _NAME.search(text)
    if name and "unknown" not in name.group(1):
        found["process"] = name.group(1).strip()[:100]
    recovery = _RECOVERY.search(text)
    if recovery:
        found["recovery_action"] = recovery.group(2).strip()
    return found


def _read(line: str, number: int, now: datetime, node: str | None) -> Observation | Problem | None:
    if len(line) > MAX_LINE:
        return Problem(number, f"line {number}", f"longer than {MAX_LINE} characters")
    xid = _XID.search(line)
    sxid = None if xid else _SXID.search(line)
    if xid is None and sxid is None:
        if mentions_xid(line):
            return Problem(number, f"line {number}", "names an Xid but is not 'NVRM: Xid (PCI:<address>): <code>, ...'")
        return None
    match = xid or sxid
    assert match is not None
    try:
        when, host, uptime = _prefix(line[: match.start()], now)
    except ValueError as exc:
        return Problem(number, f"line {number}", f"unreadable time: {exc}")
    if xid is not None:
        address, code_text, text = xid.groups()
    else:
        assert sxid is not None
        _switch, address, code_text, text = sxid.groups()
    pci = canonical_pci(address)
    if pci is None:
        return Problem(number, f"line {number}", f"'{address}' is not a PCI address")
    code = int(code_text)
    data: dict[str, object] = {"raw": clip(line.strip(), 500), **_details(text)}
    if uptime is not None:
        data["uptime_s"] = uptime
    if xid is not None:
        kind, severity, gpu = "xid", xid_severity(code), GpuRef(pci_bus_id=pci)
    else:
        assert sxid is not None
        kind, gpu = "sxid", None
        severity = WARNING if re.search(r"non-fatal", text, re.IGNORECASE) else CRITICAL
        data["nvswitch"] = sxid.group(1) or "nvswitch"
        data["nvswitch_pci"] = pci
    key = None if when is not None or uptime is None else f"uptime:{uptime}:{pci}:{code}"
    return Observation(
        source=SOURCE,
        code=f"{kind}:{code}",
        severity=severity,
        message=clip(f"{'Xid' if kind == 'xid' else 'SXid'} {code}: {text}"),
        line=number,
        where=f"line {number}",
        node=node or host,
        gpu=gpu,
        observed_at=when,
        key=key,
        data=data,
    )


def parse_xid_log(text: str, now: datetime, node: str | None = None) -> Parsed:
    """Every Xid/SXid line in a kernel log. ``node`` (the host the log came from) wins over a syslog host name."""
    parsed = Parsed(SOURCE)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        result = _read(line, number, now, node)
        if result is None:
            parsed.ignored += 1
        elif isinstance(result, Problem):
            parsed.problems.append(result)
        else:
            parsed.readings += 1
            parsed.observations.append(result)
    return parsed
