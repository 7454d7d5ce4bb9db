"""``nvidia-smi -q -x`` XML: the faults a reading shows, per GPU, as observations.

NVIDIA does not promise a stable schema, so every field is optional and ``N/A`` / ``[Not Supported]`` read as
absent. Both the current and the older element names are read:

- ECC: ``ecc_errors/volatile|aggregate`` with ``dram_uncorrectable`` / ``sram_uncorrectable*`` (current) or
  ``double_bit/total`` (older) -> ``ecc:uncorrectable`` when the volatile count is above zero (critical);
  ``sram_threshold_exceeded`` Yes -> ``ecc:sram-threshold`` (critical).
- ``remapped_rows``: ``remapped_row_failure`` Yes -> ``row-remap:failure`` (critical), ``remapped_row_pending`` Yes ->
  ``row-remap:pending`` (warning: the GPU needs a reset to apply it).
- ``retired_pages`` (older GPUs): pending retirement -> ``page-retirement:pending`` (warning); 64 or more retired
  pages, a full retirement table -> ``page-retirement:limit`` (critical).
- ``temperature/gpu_temp`` ("41 C") at or over the GPU's own slowdown threshold -> ``temp:slowdown`` (warning), over
  its shutdown threshold -> ``temp:shutdown`` (critical); 90 C when the GPU reports no thresholds.
- ``clocks_event_reasons`` (older: ``clocks_throttle_reasons``): an active hardware slowdown, hardware or software
  thermal slowdown or power brake -> ``throttle:<reason>`` (warning). Idle, application clocks, power cap and sync
  boost are normal operation and ignored.

A healthy GPU yields no observation but counts as a reading. The ``<timestamp>`` (host time; the agent runs
nvidia-smi with TZ=UTC) becomes the observation time.

XML safety: a file may hold several ``<nvidia_smi_log>`` documents (readings appended over time); each is parsed on
its own, without its prolog. A ``<!DOCTYPE>`` naming an external DTD, as nvidia-smi writes, is skipped; an internal
DTD subset or any ``<!ENTITY`` is refused outright, so entity-expansion bombs never reach the parser.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any, NoReturn
from xml.parsers import expat

from gpufleet.adapters.formats.health_observation import (
    CRITICAL,
    WARNING,
    GpuRef,
    Observation,
    Parsed,
    Problem,
    canonical_pci,
    line_of,
)

SOURCE = "nvidia-smi"
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
RETIREMENT_TABLE = 64
DEFAULT_HOT_C = 90.0

_DOCUMENT = re.compile(r"<nvidia_smi_log\b.*?</nvidia_smi_log\s*>", re.DOTALL)
_DOCTYPE = re.compile(r"<!DOCTYPE\b[^>]*>", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")
_MISSING = frozenset({"", "n/a", "[n/a]", "not supported", "[not supported]", "unknown error", "[unknown error]"})
_SLOWDOWNS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")


def _text(element: ET.Element | None, path: str) -> str | None:
    if element is None:
        return None
    found = element.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return None if value.lower() in _MISSING else value


def _number(element: ET.Element | None, path: str) -> float | None:
    """The leading number of a value such as "41 C" or "80 MiB"; ``None`` for N/A."""
    value = _text(element, path)
    if value is None:
        return None
    match = _NUMBER.match(value)
    return float(match.group(1)) if match else None


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _yes(element: ET.Element | None, path: str) -> bool:
    return (_text(element, path) or "").lower() in ("yes", "active", "true")


def _uncorrectable(counts: ET.Element | None) -> int | None:
    """Uncorrectable errors in one ECC block, current (dram/sram) or older (double_bit/total) element names."""
    if counts is None:
        return None
    total: int | None = None
    for child in counts:
        if child.tag == "dram_uncorrectable" or child.tag.startswith("sram_uncorrectable"):
            value = _number(counts, child.tag)
            if value is not None:
                total = (total or 0) + int(value)
    if total is None:
        value = _number(counts, "double_bit/total")
        total = int(value) if value is not None else None
    return total


def _ctime(value: str | None) -> datetime | None:
    if not value:
        return None
    for layout in ("%a %b %d %H:%M:%S %Y", "%a %b  %d %H:%M:%S %Y"):
        try:
            return datetime.strptime(" ".join(value.split()), layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


class _Refused(Exception):
    pass


def _refuse(*_args: object) -> NoReturn:
    raise _Refused("DTD and entity declarations are refused (XML bomb guard)")


def _guarded_parse(block: str) -> ET.Element:
    """Parse with expat directly, stopping at any DTD or entity declaration, as defusedxml does; the text checks in
    ``parse_nvidia_smi`` are the first guard, this is the second."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.Parse(block, True)
    return builder.close()


def _gpu_findings(gpu: ET.Element) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(code, severity, message, data) for every fault this GPU element shows."""
    found: list[tuple[str, str, str, dict[str, Any]]] = []
    ecc = gpu.find("ecc_errors")
    volatile = _uncorrectable(ecc.find("volatile") if ecc is not None else None)
    aggregate = _uncorrectable(ecc.find("aggregate") if ecc is not None else None)
    if volatile:
        found.append(
            (
                "ecc:uncorrectable",
                CRITICAL,
                f"{volatile} uncorrectable ECC error(s) since the last driver load",
                {"volatile_uncorrectable": volatile, "aggregate_uncorrectable": aggregate},
            )
        )
    if ecc is not None and _yes(ecc, "aggregate/sram_threshold_exceeded"):
        found.append(("ecc:sram-threshold", CRITICAL, "SRAM ECC errors exceeded the threshold", {}))
    remap = gpu.find("remapped_rows")
    if remap is not None:
        counts = {
            "correctable_rows": _int(_number(remap, "remapped_row_corr")),
            "uncorrectable_rows": _int(_number(remap, "remapped_row_unc")),
        }
        if _yes(remap, "remapped_row_failure"):
            found.append(("row-remap:failure", CRITICAL, "row remapping failed: no spare rows left", counts))
        if _yes(remap, "remapped_row_pending"):
            found.append(("row-remap:pending", WARNING, "a row remap is pending: the GPU needs a reset", counts))
    retired = gpu.find("retired_pages")
    if retired is not None:
        sbe = _number(retired, "multiple_single_bit_retirement/retired_count") or 0
        dbe = _number(retired, "double_bit_retirement/retired_count") or 0
        pages = {"single_bit_pages": int(sbe), "double_bit_pages": int(dbe)}
        if _yes(retired, "pending_retirement") or _yes(retired, "pending_blacklist"):
            found.append(("page-retirement:pending", WARNING, "a page retirement is pending: reset the GPU", pages))
        if sbe + dbe >= RETIREMENT_TABLE:
            found.append(
                ("page-retirement:limit", CRITICAL, f"{int(sbe + dbe)} pages retired: the table is full", pages)
            )
    temperature = gpu.find("temperature")
    current = _number(temperature, "gpu_temp")
    if current is not None:
        shutdown = _number(temperature, "gpu_temp_max_threshold")
        slowdown = _number(temperature, "gpu_temp_slow_threshold")
        reading = {"gpu_temp_c": current, "shutdown_c": shutdown, "slowdown_c": slowdown}
        if shutdown is not None and current >= shutdown:
            found.append(("temp:shutdown", CRITICAL, f"GPU at {current:g} C, at its shutdown threshold", reading))
        elif current >= (slowdown if slowdown is not None else DEFAULT_HOT_C):
            found.append(("temp:slowdown", WARNING, f"GPU at {current:g} C, at its slowdown threshold", reading))
    for block, prefix in (
        ("clocks_event_reasons", "clocks_event_reason_"),
        ("clocks_throttle_reasons", "clocks_throttle_reason_"),
    ):
        reasons = gpu.find(block)
        if reasons is None:
            continue
        for name in _SLOWDOWNS:
            if _yes(reasons, prefix + name):
                found.append((f"throttle:{name}", WARNING, f"clocks held down: {name.replace('_', ' ')}", {}))
    return found


def _document(block: str, start_line: int, position: int, node: str | None, parsed: Parsed) -> None:
    where = f"document {position}"
    if len(block.encode("utf-8", errors="replace")) > MAX_DOCUMENT_BYTES:
        parsed.problems.append(Problem(start_line, where, f"larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB"))
        return
    if "<!ENTITY" in block or "<!DOCTYPE" in block:
        parsed.problems.append(Problem(start_line, where, "DTD declarations inside the document are refused"))
        return
    try:
        root = _guarded_parse(block)
    except _Refused as exc:
        parsed.problems.append(Problem(start_line, where, str(exc)))
        return
    except expat.ExpatError as exc:
        message = f"not well-formed XML at column {exc.offset + 1}: {expat.ErrorString(exc.code)}"
        parsed.problems.append(Problem(start_line + exc.lineno - 1, where, message))
        return
    observed_at = _ctime(_text(root, "timestamp"))
    driver = _text(root, "driver_version")
    parsed.readings += 1
    for index, gpu in enumerate(root.findall("gpu")):
        try:
            pci = canonical_pci(gpu.get("id")) or canonical_pci(_text(gpu, "pci/pci_bus_id"))
            ref = GpuRef(index=index, pci_bus_id=pci, serial=_text(gpu, "serial"), uuid=_text(gpu, "uuid"))
            parsed.gpus.append(ref)
            for code, severity, message, data in _gpu_findings(gpu):
                parsed.observations.append(
                    Observation(
                        source=SOURCE,
                        code=code,
                        severity=severity,
                        message=message,
                        line=start_line,
                        where=f"{where} gpu[{index}]",
                        node=node,
                        gpu=ref,
                        observed_at=observed_at,
                        data={**data, "product": _text(gpu, "product_name"), "driver_version": driver},
                    )
                )
        except Exception as exc:  # one odd GPU element must not hide the others
            parsed.problems.append(Problem(start_line, f"{where} gpu[{index}]", f"unreadable: {exc}"))


def parse_nvidia_smi(text: str, node: str | None = None) -> Parsed:
    """Every ``<nvidia_smi_log>`` document in ``text``; ``node`` names the host that ran nvidia-smi."""
    parsed = Parsed(SOURCE)
    for doctype in _DOCTYPE.finditer(text):
        if "[" in doctype.group(0):
            parsed.problems.append(
                Problem(line_of(text, doctype.start()), "doctype", "an internal DTD subset is refused (XML bomb guard)")
            )
            return parsed
    if "<!ENTITY" in text.upper():
        at = text.upper().index("<!ENTITY")
        parsed.problems.append(
            Problem(line_of(text, at), "doctype", "entity declarations are refused (XML bomb guard)")
        )
        return parsed
    end = 0
    for position, match in enumerate(_DOCUMENT.finditer(text), start=1):
        _document(match.group(0), line_of(text, match.start()), position, node, parsed)
        end = match.end()
    rest = text[end:]
    if "<nvidia_smi_log" in rest:
        at = end + rest.index("<nvidia_smi_log")
        parsed.problems.append(Problem(line_of(text, at), "document", "a document starts here but never ends"))
    elif end == 0:
        parsed.problems.append(
            Problem(1, "document", "no <nvidia_smi_log> document: is this `nvidia-smi -q -x` output?")
        )
    return parsed
