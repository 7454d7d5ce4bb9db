"""What Slurm says about its nodes, jobs and reservations, read from ``sinfo --json``, ``scontrol`` and ``squeue``.

A Slurm node state is a base state (IDLE, ALLOCATED, MIXED, COMPLETING, DOWN, ...) plus flags (DRAIN, MAINTENANCE,
REBOOT_REQUESTED, REBOOT_ISSUED, NOT_RESPONDING, RESERVED, POWERED_DOWN, ...). The distinction that matters most to
gpufleet is DRAINING (the DRAIN flag on a node still running work) against DRAINED (DRAIN on a node with none): only
the second is safe to repair. Slurm 22.05's ``sinfo --json`` gives the base as a lower-case string and the flags as
a list; 23.02 and later give one list holding both. ``scontrol show node -o`` gives ``State=IDLE+DRAIN`` on every
version, so both parsers end in the same record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

BASE_STATES = frozenset(
    {"IDLE", "ALLOCATED", "MIXED", "COMPLETING", "DOWN", "FUTURE", "UNKNOWN", "ERROR", "PLANNED", "INVAL"}
)
BUSY_STATES = frozenset({"ALLOCATED", "MIXED", "COMPLETING"})
_NO_TIME = {"", "NONE", "N/A", "UNKNOWN", "(NULL)", "INVALID", "0"}


@dataclass(frozen=True)
class SlurmNode:
    name: str
    base: str
    flags: frozenset[str] = frozenset()
    reason: str | None = None
    reason_user: str | None = None
    reason_at: datetime | None = None
    boot_time: datetime | None = None
    address: str | None = None
    partitions: tuple[str, ...] = ()
    gres: str | None = None

    @property
    def state(self) -> str:
        """Slurm's own spelling, as ``scontrol show node`` prints it: ``IDLE+DRAIN+REBOOT_REQUESTED``."""
        return "+".join([self.base, *sorted(self.flags)])

    @property
    def drain(self) -> bool:
        return "DRAIN" in self.flags

    @property
    def busy(self) -> bool:
        return self.base in BUSY_STATES

    @property
    def draining(self) -> bool:
        return self.drain and self.busy

    @property
    def drained(self) -> bool:
        return self.drain and not self.busy

    @property
    def down(self) -> bool:
        return self.base == "DOWN"

    @property
    def not_responding(self) -> bool:
        return "NOT_RESPONDING" in self.flags

    @property
    def reboot_requested(self) -> bool:
        return "REBOOT_REQUESTED" in self.flags

    @property
    def reboot_issued(self) -> bool:
        return "REBOOT_ISSUED" in self.flags

    @property
    def reboot_pending(self) -> bool:
        return self.reboot_requested or self.reboot_issued

    @property
    def maintenance(self) -> bool:
        return "MAINTENANCE" in self.flags

    @property
    def powered_down(self) -> bool:
        return "POWERED_DOWN" in self.flags or "POWER_DOWN" in self.flags

    @property
    def reboot_timed_out(self) -> bool:
        """Slurm gave up waiting for the node to come back from a reboot and marked it DOWN."""
        return self.down and not self.reboot_pending and "reboot timed out" in (self.reason or "")

    @property
    def schedulable(self) -> bool:
        held = self.drain or self.down or self.not_responding or self.reboot_pending or self.powered_down
        return not held and self.base not in {"FUTURE", "UNKNOWN", "ERROR", "INVAL"}


@dataclass(frozen=True)
class SlurmJob:
    id: str
    state: str
    user: str | None
    started_at: datetime | None
    ends_at: datetime | None
    node_count: int
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlurmReservation:
    name: str
    nodes: tuple[str, ...]
    flags: frozenset[str]
    starts_at: datetime | None
    ends_at: datetime | None
    state: str
    users: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


class SlurmParseError(ValueError):
    """Slurm printed something this parser does not understand; names what and where."""


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, dict):  # 23.02+: {"set": true, "infinite": false, "number": 1700000000}
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


def local_time(text: str | None) -> datetime | None:
    """Slurm prints times in the controller's local time without a zone; read them in this host's zone."""
    if text is None or text.strip().upper() in _NO_TIME:
        return None
    try:
        return datetime.fromisoformat(text.strip()).astimezone(UTC)
    except ValueError:
        return None


def _split_state(tokens: list[str]) -> tuple[str, frozenset[str]]:
    upper = [t.strip().upper().rstrip("*~#!%$@^-") for t in tokens if t and t.strip()]
    base = next((t for t in upper if t in BASE_STATES), "UNKNOWN")
    flags = frozenset(t for t in upper if t != base)
    return base, flags


def parse_sinfo_json(text: str) -> list[SlurmNode]:
    """Nodes from ``sinfo --json`` (Slurm 22.05 and later)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SlurmParseError(f"sinfo --json printed invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(document, dict) or not isinstance(document.get("nodes"), list):
        raise SlurmParseError("sinfo --json printed no 'nodes' list")
    nodes = []
    for i, item in enumerate(document["nodes"]):
        if not isinstance(item, dict) or not item.get("name"):
            raise SlurmParseError(f"sinfo --json: nodes[{i}] has no name")
        state = item.get("state")
        tokens = [str(s) for s in state] if isinstance(state, list) else [str(state or "")]
        tokens += [str(f) for f in item.get("state_flags") or []]
        base, flags = _split_state(tokens)
        reason = item.get("reason") or None
        nodes.append(
            SlurmNode(
                name=str(item["name"]),
                base=base,
                flags=flags,
                reason=reason,
                reason_user=item.get("reason_set_by_user") or None,
                reason_at=_epoch(item.get("reason_changed_at")) if reason else None,
                boot_time=_epoch(item.get("boot_time")),
                address=item.get("address") or None,
                partitions=tuple(str(p) for p in item.get("partitions") or ()),
                gres=item.get("gres") or None,
            )
        )
    return nodes


_REASON = re.compile(r"\s?Reason=(?P<text>.*?)\s\[(?P<user>[^@\]]*)@(?P<at>[^\]]*)\]")


def _fields(line: str) -> tuple[dict[str, str], re.Match[str] | None]:
    reason = _REASON.search(line)
    rest = line[: reason.start()] + line[reason.end() :] if reason else line
    values: dict[str, str] = {}
    for token in rest.split():
        key, sep, value = token.partition("=")
        if sep:
            values[key] = value
    return values, reason


def parse_scontrol_node(line: str) -> SlurmNode:
    """One node from ``scontrol show node -o NAME`` (one line per node)."""
    values, reason = _fields(line.strip())
    name = values.get("NodeName")
    if not name:
        raise SlurmParseError(f"scontrol show node printed no NodeName: {line[:120]!r}")
    base, flags = _split_state(values.get("State", "UNKNOWN").split("+"))
    return SlurmNode(
        name=name,
        base=base,
        flags=flags,
        reason=reason.group("text") if reason else None,
        reason_user=reason.group("user") if reason else None,
        reason_at=local_time(reason.group("at")) if reason else None,
        boot_time=local_time(values.get("BootTime")),
        address=values.get("NodeAddr"),
        partitions=tuple(p for p in values.get("Partitions", "").split(",") if p),
        gres=values.get("Gres"),
    )


def parse_scontrol_nodes(text: str) -> list[SlurmNode]:
    return [parse_scontrol_node(line) for line in text.splitlines() if line.strip().startswith("NodeName=")]


SQUEUE_FORMAT = "%i|%T|%u|%S|%e|%D|%N"
"""What ``squeue -h -o`` is asked for: id, state, user, start, end, node count and node list."""


def parse_squeue(text: str) -> list[SlurmJob]:
    jobs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 7:
            raise SlurmParseError(f"squeue line {number}: expected 7 fields, got {len(parts)}: {line[:120]!r}")
        job_id, state, user, start, end, count, nodelist = parts
        jobs.append(
            SlurmJob(
                id=job_id.strip(),
                state=state.strip(),
                user=user.strip() or None,
                started_at=local_time(start),
                ends_at=local_time(end),
                node_count=int(count) if count.strip().isdigit() else 1,
                nodes=tuple(expand_hostlist(nodelist.strip())),
            )
        )
    return jobs


def parse_reservations(text: str) -> list[SlurmReservation]:
    """Reservations from ``scontrol show reservation -o``."""
    found = []
    for line in text.splitlines():
        if not line.startswith("ReservationName="):
            continue
        values, _ = _fields(line)
        found.append(
            SlurmReservation(
                name=values["ReservationName"],
                nodes=tuple(expand_hostlist(values.get("Nodes", ""))),
                flags=frozenset(f for f in values.get("Flags", "").split(",") if f),
                starts_at=local_time(values.get("StartTime")),
                ends_at=local_time(values.get("EndTime")),
                state=values.get("State", ""),
                users=values.get("Users"),
                raw=values,
            )
        )
    return found


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p]


def expand_hostlist(text: str) -> list[str]:
    """``gpu-[001-003,007],login1`` -> every name, as ``scontrol show hostnames`` would print them."""
    if not text or text in {"(null)", "None assigned"}:
        return []
    names: list[str] = []
    for part in _split_top(text):
        open_at = part.find("[")
        if open_at < 0:
            names.append(part)
            continue
        close_at = part.index("]", open_at)
        head, body, tail = part[:open_at], part[open_at + 1 : close_at], part[close_at + 1 :]
        for item in body.split(","):
            low, sep, high = item.partition("-")
            if not sep:
                names.extend(head + item + rest for rest in expand_hostlist(tail) or [""])
                continue
            width = len(low)
            for number in range(int(low), int(high) + 1):
                names.extend(head + str(number).zfill(width) + rest for rest in expand_hostlist(tail) or [""])
    return names
