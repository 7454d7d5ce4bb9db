"""What every health telemetry parser hands back: observations that remember where they came from, and problems.

The parsers are pure functions of the text (and of "now", for the year a syslog line leaves out). None raises on one
bad line or document: it becomes a ``Problem`` with its position and the rest is read. Matching an observation to a
node and GPU of the inventory is the ingest service's job; parsers only say how the source named them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from gpufleet.adapters.formats.inventory import array_item_lines

INFO = "info"
WARNING = "warning"
CRITICAL = "critical"
SEVERITIES = (INFO, WARNING, CRITICAL)
FIRING = "firing"
RESOLVED = "resolved"

MAX_TEXT_BYTES = 64 * 1024 * 1024
MAX_MESSAGE = 2000

_PCI = re.compile(r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})(?:\.([0-7]))?")


def canonical_pci(value: object) -> str | None:
    """One spelling for a PCI address: nvidia-smi's ``00000000:19:00.0`` and the kernel's ``0000:19:00`` agree.

    The domain keeps four hex digits, the function defaults to 0; ``None`` when the value is not a PCI address.
    """
    if not isinstance(value, str):
        return None
    return _canonical_pci(value)


@lru_cache(maxsize=8192)
def _canonical_pci(value: str) -> str | None:
    """Cached: a fleet has a handful of distinct GPU addresses, read again for every event and every GPU row."""
    text = value.strip().lower()
    if text.startswith("pci:"):
        text = text[4:]
    match = _PCI.fullmatch(text)
    if match is None:
        return None
    domain = int(match.group(1) or "0", 16)
    bus, device = int(match.group(2), 16), int(match.group(3), 16)
    return f"{domain:04x}:{bus:02x}:{device:02x}.{int(match.group(4) or 0)}"


@dataclass(frozen=True)
class GpuRef:
    """How a source named a GPU; any of the four may be missing."""

    index: int | None = None
    pci_bus_id: str | None = None
    serial: str | None = None
    uuid: str | None = None

    @property
    def empty(self) -> bool:
        return self.index is None and not self.pci_bus_id and not self.serial and not self.uuid

    def describe(self) -> str:
        if self.pci_bus_id is None and self.serial is None and self.uuid is None:  # what most sources give
            return "-" if self.index is None else f"index {self.index}"
        parts = [] if self.index is None else [f"index {self.index}"]
        for name, value in (("pci_bus_id", self.pci_bus_id), ("serial", self.serial), ("uuid", self.uuid)):
            if value:
                parts.append(f"{name} {value}")
        return ", ".join(parts) or "-"

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.index is not None:
            found["index"] = self.index
        if self.pci_bus_id is not None:
            found["pci_bus_id"] = self.pci_bus_id
        if self.serial is not None:
            found["serial"] = self.serial
        if self.uuid is not None:
            found["uuid"] = self.uuid
        return found


@dataclass
class Observation:
    """One thing a source saw. ``key`` is the source's own identity for it when it has one (an Alertmanager
    fingerprint, an uptime stamp); ``observed_at`` is ``None`` when the source gave no wall-clock time."""

    source: str
    code: str
    severity: str
    message: str
    line: int
    where: str
    node: str | None = None
    gpu: GpuRef | None = None
    observed_at: datetime | None = None
    status: str = FIRING
    key: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """A line or document that could not be read, and where: ``line`` in the text, ``where`` inside a document."""

    line: int | None
    where: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "where": self.where, "message": self.message}

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Parsed:
    """A parser's result: ``readings`` counts what was read whether or not it showed a fault, ``ignored`` counts
    lines with nothing for us (kernel log lines that are not Xid lines), ``gpus`` the GPU identities seen."""

    source: str
    observations: list[Observation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    readings: int = 0
    ignored: int = 0
    gpus: list[GpuRef] = field(default_factory=list)


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_iso(value: object) -> datetime:
    """ISO 8601 with or without an offset (read as UTC), also journalctl's ``+0000``; raises ValueError."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected an ISO 8601 time such as 2026-01-27T10:00:00Z")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{value}' is not an ISO 8601 time such as 2026-01-27T10:00:00Z") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, max(0, offset)) + 1


def json_documents(text: str) -> tuple[list[tuple[int, Any]], list[Problem]]:
    """The JSON values in a body: one value, a JSON array of values, or JSONL; each with the line it starts on.

    A body that is not one JSON value is read as JSONL, unless its first line is not JSON either: then it is one
    malformed document, reported once at the place the decoder stopped.
    """
    if not text.strip():
        return [], [Problem(1, "body", "empty body")]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        first = next(line for line in text.splitlines() if line.strip())
        try:
            json.loads(first)
        except json.JSONDecodeError:
            return [], [Problem(exc.lineno, "body", f"not valid JSON: {exc.msg} at column {exc.colno}")]
        return _jsonl(text)
    start = line_of(text, len(text) - len(text.lstrip()))
    if isinstance(value, list):
        lines = array_item_lines(text)
        if len(lines) != len(value):
            lines = [start] * len(value)
        return list(zip(lines, value, strict=True)), []
    return [(start, value)], []


def _jsonl(text: str) -> tuple[list[tuple[int, Any]], list[Problem]]:
    values: list[tuple[int, Any]] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            values.append((number, json.loads(raw)))
        except json.JSONDecodeError as exc:
            problems.append(Problem(number, f"line {number}", f"not valid JSON: {exc.msg} at column {exc.colno}"))
    return values, problems
