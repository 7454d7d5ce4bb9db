"""The generic JSON health event: what any other monitor can send.

Schema (one object, a JSON array of objects, or JSONL)::

    {
      "node": "gpu-017",              required unless the caller names the node: chassis id, serial or hostname
      "gpu": 3,                       optional: index (a number, or up to 4 digits), PCI bus id ("0000:3b:00.0"),
                                      UUID ("GPU-..."), or else a GPU serial
      "code": "xid:79",               required: 1-80 characters of letters, digits and _ . : / -
      "severity": "critical",         required: info | warning | critical
      "message": "fell off the bus",  optional, at most 2000 characters
      "observed_at": "2026-01-27T10:00:00Z",   required: ISO 8601; without an offset it is read as UTC
      "status": "firing",             optional: firing (default) | resolved
      "fingerprint": "mon-42-8812",   optional, at most 100 characters: the sender's identity for this observation;
                                      sending it again is a duplicate whatever else changed
      "data": {...}                   optional object, kept with the event as evidence
    }

Unknown fields are refused, so a misspelt field is reported instead of silently lost. Each bad field is a problem at
``item N.field`` with the line the item starts on.
"""

from __future__ import annotations

import re
from typing import Any

from gpufleet.adapters.formats.health_observation import (
    FIRING,
    MAX_MESSAGE,
    RESOLVED,
    SEVERITIES,
    GpuRef,
    Observation,
    Parsed,
    Problem,
    canonical_pci,
    clip,
    json_documents,
    parse_iso,
)

SOURCE = "json"
FIELDS = frozenset({"node", "gpu", "code", "severity", "message", "observed_at", "status", "fingerprint", "data"})
_CODE = re.compile(r"^[A-Za-z0-9_.:/-]{1,80}$")


def gpu_ref(value: object) -> GpuRef | None:
    """A GPU named the way people and tools do: an index, a PCI address, a UUID or a serial."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("expected a GPU index, PCI bus id, UUID or serial")
    if isinstance(value, int):
        if not 0 <= value < 1024:
            raise ValueError(f"GPU index {value} is out of range")
        return GpuRef(index=value)
    if not isinstance(value, str) or len(value) > 100:
        raise ValueError("expected a GPU index, PCI bus id, UUID or serial of at most 100 characters")
    text = value.strip()
    if text.isdigit() and len(text) <= 4:  # GPU serials are long digit strings; indices are small
        return GpuRef(index=int(text))
    if text.upper().startswith(("GPU-", "MIG-")):
        return GpuRef(uuid=text)
    pci = canonical_pci(text) if ":" in text else None
    return GpuRef(pci_bus_id=pci) if pci else GpuRef(serial=text)


def _item(item: Any, line: int, where: str, node: str | None) -> Observation | list[Problem]:
    if not isinstance(item, dict):
        return [Problem(line, where, "a health event must be a JSON object")]
    problems = [Problem(line, f"{where}.{k}", "unknown field") for k in sorted(set(item) - FIELDS, key=str)]
    name = node or item.get("node")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        problems.append(Problem(line, f"{where}.node", "expected the node's chassis id, serial or hostname"))
    code = item.get("code")
    if not isinstance(code, str) or not _CODE.match(code):
        problems.append(Problem(line, f"{where}.code", "expected 1-80 characters of letters, digits and _ . : / -"))
    severity = item.get("severity")
    if severity not in SEVERITIES:
        problems.append(Problem(line, f"{where}.severity", f"expected one of {', '.join(SEVERITIES)}"))
    status = item.get("status", FIRING)
    if status not in (FIRING, RESOLVED):
        problems.append(Problem(line, f"{where}.status", "expected firing or resolved"))
    message = item.get("message", "")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE:
        problems.append(Problem(line, f"{where}.message", f"expected text of at most {MAX_MESSAGE} characters"))
    fingerprint = item.get("fingerprint")
    if fingerprint is not None and (not isinstance(fingerprint, str) or not 1 <= len(fingerprint) <= 100):
        problems.append(Problem(line, f"{where}.fingerprint", "expected 1-100 characters"))
    data = item.get("data", {})
    if not isinstance(data, dict):
        problems.append(Problem(line, f"{where}.data", "expected an object"))
    observed_at = None
    try:
        observed_at = parse_iso(item.get("observed_at"))
    except ValueError as exc:
        problems.append(Problem(line, f"{where}.observed_at", str(exc)))
    gpu = None
    try:
        gpu = gpu_ref(item.get("gpu"))
    except ValueError as exc:
        problems.append(Problem(line, f"{where}.gpu", str(exc)))
    if problems:
        return problems
    assert isinstance(name, str) and isinstance(code, str) and isinstance(severity, str)
    return Observation(
        source=SOURCE,
        code=code,
        severity=severity,
        message=clip(message or code),
        line=line,
        where=where,
        node=name.strip(),
        gpu=gpu,
        observed_at=observed_at,
        status=str(status),
        key=f"json:{fingerprint}" if fingerprint else None,
        data=dict(data),
    )


def parse_health_json(text: str, node: str | None = None) -> Parsed:
    """Every generic health event in ``text``; ``node`` names the node for items that leave it out or name another."""
    parsed = Parsed(SOURCE)
    documents, problems = json_documents(text)
    parsed.problems.extend(problems)
    for position, (line, item) in enumerate(documents, start=1):
        result = _item(item, line, f"item {position}", node)
        if isinstance(result, list):
            parsed.problems.extend(result)
        else:
            parsed.readings += 1
            parsed.observations.append(result)
    return parsed
