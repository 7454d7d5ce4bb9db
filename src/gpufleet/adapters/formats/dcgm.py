"""``dcgmi diag -r N -j`` JSON, in the DCGM 3.x and 4.x shapes, as observations.

- DCGM 3.x: ``{"DCGM GPU Diagnostic": {"test_categories": [{"category", "tests": [{"name", "results": [{"gpu_ids":
  "0,1", "status", "warnings": [...], "info": [...]}]}]}], "version"}}``.
- DCGM 4.x: ``{"DCGM Diagnostic": {...}}`` whose results name ``entity_group`` / ``entity_id`` and carry
  ``error_id``, ``error_category`` and ``error_severity`` (on the result or on each of its warnings), with
  ``test_summary``, ``metadata`` and ``entity_groups`` (GPU serial numbers) beside them.

Each failing or warning (test, GPU) becomes one observation: code ``dcgm:<DCGM_FR_* name>`` when the output names
one, else ``dcgm:error-<id>``, else ``dcgm:<test>``; Fail is critical, Warn a warning. A run with no Fail or Warn
gives one ``dcgm:pass`` (info) observation for the node, the proof of health a repaired node needs. A warning's
``error_severity`` (e.g. ISOLATE, RESET) is kept in the data for the remediation policy.

A DCGM report carries no time of its own: ingest stamps it when it arrives. Several reports may be sent as a JSON
array or one per line (JSONL); a report that cannot be read is a problem at its line, the others still count.
"""

from __future__ import annotations

import re
from typing import Any

from gpufleet.adapters.formats.health_observation import (
    CRITICAL,
    INFO,
    WARNING,
    GpuRef,
    Observation,
    Parsed,
    Problem,
    clip,
    json_documents,
)

SOURCE = "dcgm"
ROOT_KEYS = ("DCGM Diagnostic", "DCGM GPU Diagnostic")
_FR_NAME = re.compile(r"\bDCGM_FR_[A-Z0-9_]+\b")
_STATUS_SEVERITY = {"fail": CRITICAL, "warn": WARNING, "warning": WARNING}


def is_dcgm(value: object) -> bool:
    return isinstance(value, dict) and any(key in value for key in ROOT_KEYS)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "test"


def _gpu_serials(doc: dict[str, Any], body: dict[str, Any]) -> dict[int, str]:
    serials: dict[int, str] = {}
    for holder in (body, doc):
        for group in holder.get("entity_groups") or []:
            if not isinstance(group, dict) or str(group.get("entity_group", "GPU")).upper() != "GPU":
                continue
            for entity in group.get("entities") or []:
                if isinstance(entity, dict) and entity.get("serial_num") not in (None, "", "N/A"):
                    serials[int(entity["entity_id"])] = str(entity["serial_num"])
        listed = holder.get("GPU Device Serials")
        if isinstance(listed, dict):
            serials.update({int(k): str(v) for k, v in listed.items() if str(k).isdigit() and v})
    return serials


def _gpus_of(result: dict[str, Any]) -> list[int | None] | None:
    """GPU indices a result is about; ``[None]`` for a node-wide result, ``None`` when it names another entity."""
    group = result.get("entity_group")
    if group is not None or "entity_id" in result:
        if str(group or "GPU").upper() != "GPU":
            return None
        return [int(result["entity_id"])]
    ids = result.get("gpu_ids", result.get("gpu_id"))
    if ids is None or ids == "":
        return [None]
    if isinstance(ids, int):
        return [ids]
    if isinstance(ids, list):
        return [int(i) for i in ids]
    return [int(part) for part in str(ids).split(",") if part.strip()]


def _failures(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The warnings of a result as dicts; the 4.x error fields on the result itself count as one."""
    found: list[dict[str, Any]] = []
    warnings = result.get("warnings") or []
    if isinstance(warnings, dict | str):
        warnings = [warnings]
    for warning in warnings:
        found.append(warning if isinstance(warning, dict) else {"warning": str(warning)})
    if not found and any(k in result for k in ("error_id", "error_category", "error_severity")):
        found.append({k: result.get(k) for k in ("error_id", "error_category", "error_severity", "warning")})
    return found or [{}]


def _code(test: str, failure: dict[str, Any]) -> str:
    named = _FR_NAME.search(str(failure.get("error_id", "")) + " " + str(failure.get("warning", "")))
    if named:
        return f"dcgm:{named.group(0)}"
    error_id = failure.get("error_id")
    if isinstance(error_id, int) and not isinstance(error_id, bool) and error_id > 0:
        return f"dcgm:error-{error_id}"
    return f"dcgm:{_slug(test)}"


def _report(doc: dict[str, Any], line: int, where: str, node: str | None, parsed: Parsed) -> None:
    key = next(k for k in ROOT_KEYS if k in doc)
    body = doc[key]
    if not isinstance(body, dict) or not isinstance(body.get("test_categories"), list):
        parsed.problems.append(Problem(line, where, f"'{key}' has no test_categories list"))
        return
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else doc.get("metadata")
    version = body.get("version") or (metadata or {}).get("version") or doc.get("version")
    shape = "4.x" if key == "DCGM Diagnostic" else "3.x"
    serials = _gpu_serials(doc, body)
    for index, serial in sorted(serials.items()):
        parsed.gpus.append(GpuRef(index=index, serial=serial))
    parsed.readings += 1
    common = {"dcgm_version": version, "shape": shape}
    results = faults = 0
    seen: set[tuple[str, int | None, str]] = set()
    if body.get("runtime_error"):
        faults += 1
        parsed.observations.append(
            Observation(
                SOURCE,
                "dcgm:runtime-error",
                WARNING,
                clip(f"the diagnostic did not run: {body['runtime_error']}"),
                line,
                where,
                node,
                None,
                data=dict(common),
            )
        )
    for category in body["test_categories"]:
        tests = category.get("tests") if isinstance(category, dict) else None
        if not isinstance(tests, list):
            parsed.problems.append(Problem(line, where, "a test category without a tests list"))
            continue
        for test in tests:
            name = str(test.get("name", "?")) if isinstance(test, dict) else "?"
            entries = test.get("results") if isinstance(test, dict) else None
            if not isinstance(entries, list):
                parsed.problems.append(Problem(line, f"{where} test {name}", "no results list"))
                continue
            for number, result in enumerate(entries):
                spot = f"{where} test {name} result[{number}]"
                try:
                    if not isinstance(result, dict):
                        raise ValueError("a result must be an object")
                    results += 1
                    status = str(result.get("status", "")).strip().lower()
                    severity = _STATUS_SEVERITY.get(status)
                    gpus = _gpus_of(result)
                    if severity is None:
                        continue
                    faults += 1
                    for gpu in gpus or [None]:
                        ref = None if gpu is None else GpuRef(index=gpu, serial=serials.get(gpu))
                        for failure in _failures(result):
                            code = _code(name, failure)
                            if (code, gpu, spot) in seen:
                                continue
                            seen.add((code, gpu, spot))
                            text = str(failure.get("warning") or f"{name}: {status}")
                            data = {
                                **common,
                                "test": name,
                                "category": category.get("category"),
                                "status": status,
                                "error_id": failure.get("error_id"),
                                "error_category": failure.get("error_category"),
                                "error_severity": failure.get("error_severity"),
                            }
                            if gpus is None:
                                data["entity"] = f"{result.get('entity_group')}:{result.get('entity_id')}"
                            message = clip(f"DCGM {name} {status}: {text}")
                            parsed.observations.append(
                                Observation(SOURCE, code, severity, message, line, spot, node, ref, data=data)
                            )
                except (TypeError, ValueError, KeyError) as exc:
                    parsed.problems.append(Problem(line, spot, f"unreadable result: {exc}"))
    if results and not faults:
        parsed.observations.append(
            Observation(
                SOURCE,
                "dcgm:pass",
                INFO,
                f"DCGM diagnostic passed ({results} result(s))",
                line,
                where,
                node,
                None,
                data={**common, "results": results},
            )
        )


def parse_dcgm(text: str, node: str | None = None) -> Parsed:
    """Every dcgmi report in ``text`` (one JSON object, an array of them, or JSONL)."""
    parsed = Parsed(SOURCE)
    documents, problems = json_documents(text)
    parsed.problems.extend(problems)
    for position, (line, doc) in enumerate(documents, start=1):
        where = f"document {position}"
        if not is_dcgm(doc):
            parsed.problems.append(Problem(line, where, "not `dcgmi diag -j` output: no 'DCGM Diagnostic' object"))
            continue
        try:
            _report(doc, line, where, node, parsed)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            parsed.problems.append(Problem(line, where, f"unreadable report: {exc}"))
    return parsed
