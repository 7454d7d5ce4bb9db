"""Prometheus Alertmanager webhook payloads (version "4"), as the DCGM exporter's alerts arrive.

One observation per alert in ``alerts``:

- node: ``--node`` if given, else the first of the labels ``Hostname`` (DCGM exporter), ``hostname``, ``node``,
  ``nodename``, ``host``, then ``instance`` without its port;
- GPU: ``gpu`` (index), ``UUID``/``uuid``, ``pci_bus_id``, ``serial``;
- code: ``xid:<n>`` when a label ``xid``, ``xid_code`` or ``err_code`` holds an Xid number (so the Xid policy applies
  to alerts too), else ``alert:<alertname>``;
- severity from the ``severity`` label (critical/page/error -> critical, warning -> warning, info/none -> info);
- status ``firing`` or ``resolved``; time ``startsAt``, or ``endsAt`` for a resolved alert.

Alertmanager sends the same alert again on every ``repeat_interval``: the identity ``key`` is its ``fingerprint``
with ``startsAt`` and status, so a repeat is recognised as a duplicate while its resolution is a new observation.
A payload may be one JSON object, an array of them or JSONL. A bad alert is a problem at ``payload N alerts[i]``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gpufleet.adapters.formats.health_observation import (
    CRITICAL,
    FIRING,
    INFO,
    RESOLVED,
    WARNING,
    GpuRef,
    Observation,
    Parsed,
    Problem,
    canonical_pci,
    clip,
    json_documents,
    parse_iso,
)

SOURCE = "alertmanager"
NODE_LABELS = ("Hostname", "hostname", "node", "nodename", "host")
XID_LABELS = ("xid", "xid_code", "err_code")
_SEVERITY = {
    "critical": CRITICAL,
    "page": CRITICAL,
    "error": CRITICAL,
    "high": CRITICAL,
    "warning": WARNING,
    "warn": WARNING,
    "info": INFO,
    "none": INFO,
    "low": INFO,
}


def is_alertmanager(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("alerts"), list)


def _instance_host(instance: str) -> str:
    if instance.startswith("["):
        return instance[1 : instance.find("]")] if "]" in instance else instance
    return instance.rsplit(":", 1)[0] if instance.count(":") == 1 else instance


def _node(labels: dict[str, str]) -> str | None:
    for name in NODE_LABELS:
        if labels.get(name):
            return labels[name]
    instance = labels.get("instance")
    return _instance_host(instance) if instance else None


def _gpu(labels: dict[str, str]) -> GpuRef | None:
    raw_index = labels.get("gpu", "")
    index = int(raw_index) if raw_index.strip().isdigit() else None
    ref = GpuRef(
        index=index,
        pci_bus_id=canonical_pci(labels.get("pci_bus_id")),
        serial=labels.get("serial") or None,
        uuid=labels.get("UUID") or labels.get("uuid") or None,
    )
    return None if ref.empty else ref


def _code(labels: dict[str, str]) -> str:
    for name in XID_LABELS:
        value = labels.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return f"xid:{int(value)}"
    return f"alert:{labels.get('alertname') or 'unnamed'}"


def _is_zero_time(value: object) -> bool:
    return not value or str(value).startswith("0001-01-01")


def _alert(alert: Any, payload: dict[str, Any], line: int, where: str, node: str | None) -> Observation | Problem:
    if not isinstance(alert, dict):
        return Problem(line, where, "an alert must be an object")
    labels = alert.get("labels")
    if not isinstance(labels, dict) or not labels:
        return Problem(line, where, "the alert has no labels")
    labels = {str(k): str(v) for k, v in labels.items()}
    status = str(alert.get("status") or payload.get("status") or "").lower()
    if status not in (FIRING, RESOLVED):
        return Problem(line, f"{where}.status", f"expected firing or resolved, got {alert.get('status')!r}")
    try:
        starts = parse_iso(alert.get("startsAt"))
    except ValueError as exc:
        return Problem(line, f"{where}.startsAt", str(exc))
    ends = None
    if not _is_zero_time(alert.get("endsAt")):
        try:
            ends = parse_iso(alert.get("endsAt"))
        except ValueError as exc:
            return Problem(line, f"{where}.endsAt", str(exc))
    if status == RESOLVED and ends is None:
        return Problem(line, f"{where}.endsAt", "a resolved alert needs its endsAt")
    fingerprint = str(alert.get("fingerprint") or "")
    if not fingerprint:  # Alertmanager's fingerprint is a hash of the label set; make the same kind of identity
        fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    raw_annotations = alert.get("annotations")
    annotations: dict[str, Any] = raw_annotations if isinstance(raw_annotations, dict) else {}
    summary = annotations.get("summary") or annotations.get("description") or labels.get("alertname", "alert")
    return Observation(
        source=SOURCE,
        code=_code(labels),
        severity=_SEVERITY.get(labels.get("severity", "").lower(), WARNING),
        message=clip(str(summary)),
        line=line,
        where=where,
        node=node or _node(labels),
        gpu=_gpu(labels),
        observed_at=ends if status == RESOLVED and ends is not None else starts,
        status=status,
        key=f"alertmanager:{fingerprint}:{alert.get('startsAt')}:{status}",
        data={
            "fingerprint": fingerprint,
            "labels": labels,
            "annotations": {str(k): clip(str(v), 500) for k, v in annotations.items()},
            "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat() if ends else None,
            "generator_url": clip(str(alert.get("generatorURL") or ""), 500) or None,
            "receiver": payload.get("receiver"),
        },
    )


def parse_alertmanager(text: str, node: str | None = None) -> Parsed:
    """Every alert of every webhook payload in ``text``."""
    parsed = Parsed(SOURCE)
    documents, problems = json_documents(text)
    parsed.problems.extend(problems)
    for position, (line, payload) in enumerate(documents, start=1):
        where = f"payload {position}"
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            parsed.problems.append(Problem(line, where, "not an Alertmanager webhook payload: no 'alerts' list"))
            continue
        version = payload.get("version")
        if version is not None and str(version) != "4":
            parsed.problems.append(Problem(line, f"{where}.version", f"payload version {version!r}; only 4 is read"))
            continue
        parsed.readings += 1
        for index, alert in enumerate(payload["alerts"]):
            result = _alert(alert, payload, line, f"{where} alerts[{index}]", node)
            if isinstance(result, Problem):
                parsed.problems.append(result)
            else:
                parsed.observations.append(result)
    return parsed
