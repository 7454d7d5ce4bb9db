"""What a valid supplier inventory row is: required columns, formats of labels and GPU serials, known states.

Pure: checking a row needs nothing but the row, so the same rules serve the CLI, the API and any future importer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpufleet.domain.lifecycle import NodeState, parse_state

REQUIRED = ("supplier", "serial", "hostname", "sku", "cluster")
OPTIONAL = (
    "rack",
    "nvlink_domain",
    "switch",
    "provider_id",
    "bmc_address",
    "labels",
    "gpu_serials",
    "state",
    "tenant",
    "project",
    "attributes",
)
KNOWN = frozenset(REQUIRED + OPTIONAL)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$")


@dataclass(frozen=True)
class RowError:
    line: int
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"


@dataclass
class NodeRow:
    line: int
    supplier: str
    serial: str
    hostname: str
    sku: str
    cluster: str
    rack: str | None
    nvlink_domain: str | None
    switch: str | None
    provider_id: str | None
    bmc_address: str | None
    labels: dict[str, str] | None
    gpu_serials: list[str] | None
    state: NodeState | None
    tenant: str | None
    project: str | None
    attributes: dict[str, Any] | None


# Row validation: per row, naming the field.


def _text(values: dict[str, Any], name: str, line: int, errors: list[RowError], max_len: int = 255) -> str | None:
    raw = values.get(name)
    if raw is None:
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        errors.append(RowError(line, name, f"expected text, got {type(raw).__name__}"))
        return None
    value = raw.strip()
    if len(value) > max_len:
        errors.append(RowError(line, name, f"longer than {max_len} characters"))
        return None
    return value or None


def _labels(raw: Any, line: int, errors: list[RowError]) -> dict[str, str] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, dict):
        pairs = [(str(k), "" if v is None else str(v)) for k, v in raw.items()]
    elif isinstance(raw, str):
        pairs = []
        for part in raw.split(";"):
            if not part.strip():
                continue
            if "=" not in part:
                errors.append(RowError(line, "labels", f"'{part.strip()}' is not key=value (labels look like k=v;k=v)"))
                return None
            key, value = part.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    else:
        errors.append(RowError(line, "labels", "expected k=v;k=v or an object"))
        return None
    for key, value in pairs:
        if not re.match(r"^[A-Za-z0-9_./-]{1,100}$", key):
            errors.append(RowError(line, "labels", f"bad label key '{key}'"))
            return None
        if len(value) > 255:
            errors.append(RowError(line, "labels", f"label '{key}' is longer than 255 characters"))
            return None
    return dict(pairs)


def _gpu_serials(raw: Any, line: int, errors: list[RowError]) -> list[str] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        items = [s.strip() for s in raw.split(";")]
    elif isinstance(raw, list):
        items = [str(s).strip() for s in raw]
    else:
        errors.append(RowError(line, "gpu_serials", "expected serials separated by ';' or a list"))
        return None
    if any(not s for s in items):
        errors.append(RowError(line, "gpu_serials", "an empty GPU serial in the list"))
        return None
    if len(set(items)) != len(items):
        errors.append(RowError(line, "gpu_serials", "the same GPU serial appears twice in one node"))
        return None
    if any(len(s) > 100 for s in items) or len(items) > 1024:
        errors.append(RowError(line, "gpu_serials", "a GPU serial over 100 characters or more than 1024 GPUs"))
        return None
    return items


def validate_row(line: int, row_values: dict[str, Any]) -> tuple[NodeRow | None, list[RowError]]:
    """Check one inventory row on its own, collecting every problem with its field rather than stopping at one."""
    errors: list[RowError] = []
    values = {str(k).strip().lower(): v for k, v in row_values.items()}
    unknown = sorted(k for k in values if k not in KNOWN)
    if unknown:
        errors.append(RowError(line, unknown[0], f"unknown column(s): {', '.join(unknown)}"))
    required: dict[str, str] = {}
    for name in REQUIRED:
        value = _text(values, name, line, errors)
        if value is None:
            if not any(e.field == name for e in errors):
                errors.append(RowError(line, name, "required and missing"))
        elif name in ("supplier", "sku", "cluster", "serial", "hostname") and not _NAME.match(value):
            errors.append(RowError(line, name, f"'{value}' has characters not allowed in a name"))
        else:
            required[name] = value
    state = None
    state_text = _text(values, "state", line, errors)
    if state_text:
        try:
            state = parse_state(state_text)
        except ValueError as exc:
            errors.append(RowError(line, "state", str(exc)))
    attributes = values.get("attributes")
    if attributes in ("", None):
        attributes = None
    elif not isinstance(attributes, dict):
        errors.append(RowError(line, "attributes", "expected an object (JSON inventories only)"))
    row_labels = _labels(values.get("labels"), line, errors)
    gpus = _gpu_serials(values.get("gpu_serials"), line, errors)
    optional = {n: _text(values, n, line, errors) for n in ("rack", "nvlink_domain", "switch", "tenant", "project")}
    provider_id = _text(values, "provider_id", line, errors)
    bmc_address = _text(values, "bmc_address", line, errors)
    if errors:
        return None, errors
    return (
        NodeRow(
            line=line,
            supplier=required["supplier"],
            serial=required["serial"],
            hostname=required["hostname"],
            sku=required["sku"],
            cluster=required["cluster"],
            rack=optional["rack"],
            nvlink_domain=optional["nvlink_domain"],
            switch=optional["switch"],
            provider_id=provider_id,
            bmc_address=bmc_address,
            labels=row_labels,
            gpu_serials=gpus,
            state=state,
            tenant=optional["tenant"],
            project=optional["project"],
            attributes=attributes,
        ),
        [],
    )
