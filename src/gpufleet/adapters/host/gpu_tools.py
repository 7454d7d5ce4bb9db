"""Running NVIDIA's tools on the host: ``nvidia-smi -q -x`` for a reading, ``dcgmi diag -r N -j`` for a diagnostic.

Both run with ``TZ=UTC`` so the times they print are UTC, and with a timeout so a hung driver cannot hang the agent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

NVIDIA_SMI = "nvidia-smi"
DCGMI = "dcgmi"
SMI_TIMEOUT_S = 60.0
# dcgmi diag -r 1 takes about a minute, -r 2 a few minutes, -r 3 half an hour, -r 4 up to a couple of hours.
DIAG_TIMEOUT_S = {1: 300.0, 2: 1200.0, 3: 3600.0, 4: 3 * 3600.0}


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    output: str
    error: str = ""


def available(tool: str) -> bool:
    return shutil.which(tool) is not None


def _run(argv: list[str], timeout: float) -> ToolResult:
    env = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except FileNotFoundError:
        return ToolResult(False, "", f"{argv[0]} is not on PATH")
    except subprocess.TimeoutExpired:
        return ToolResult(False, "", f"{' '.join(argv)} did not finish within {timeout:g} s")
    except OSError as exc:
        return ToolResult(False, "", f"{argv[0]} could not run: {exc}")
    error = " ".join((done.stderr or done.stdout or "").split())[:500]
    return ToolResult(done.returncode == 0, done.stdout, error if done.returncode else "")


def nvidia_smi_xml(timeout: float = SMI_TIMEOUT_S) -> ToolResult:
    """One ``nvidia-smi -q -x`` reading; not ok (with nvidia-smi's own words) when the driver does not answer."""
    result = _run([NVIDIA_SMI, "-q", "-x"], timeout)
    if result.ok and "<nvidia_smi_log" not in result.output:
        return ToolResult(False, result.output, "nvidia-smi printed no <nvidia_smi_log> document")
    return result


def dcgm_diag(level: int, timeout: float | None = None) -> ToolResult:
    """``dcgmi diag -r level -j``. A run whose tests fail exits non-zero but still prints its JSON report, which
    is the result we want; only a run without a report is a failure."""
    result = _run([DCGMI, "diag", "-r", str(level), "-j"], timeout or DIAG_TIMEOUT_S.get(level, DIAG_TIMEOUT_S[4]))
    text = result.output.strip()
    if text.startswith("{") and "DCGM" in text:
        return ToolResult(True, result.output)
    return ToolResult(False, result.output, result.error or "dcgmi printed no JSON report")
