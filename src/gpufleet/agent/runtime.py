"""The agent's loop: collect on a schedule, send what is buffered, run the diagnostics the server asks for.

Collecting and sending are separate clocks. Readings are taken every ``interval`` whatever the server's state and go
to the disk buffer first; sending drains the buffer oldest first and, when the server cannot be reached, tries again
after a backoff that doubles up to ``max_backoff`` (with jitter, so a fleet's agents do not return in step). Nothing
collected is lost while the server is down, within the buffer's cap.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpufleet.adapters.host import gpu_tools
from gpufleet.adapters.host.gpu_tools import ToolResult
from gpufleet.adapters.host.kernel_log import KernelLog
from gpufleet.agent.spool import Spool
from gpufleet.agent.uplink import Outcome, Uplink

log = logging.getLogger("gpufleet.agent")
EXIT_BUFFERED = 3
"""``--once`` exit status when something is still in the buffer (the server was unreachable or refused the token)."""


@dataclass
class AgentConfig:
    node: str
    interval: float = 60.0
    read_gpus: bool = True
    run_diag: int | None = None
    min_backoff: float = 1.0
    max_backoff: float = 300.0


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        uplink: Uplink,
        spool: Spool,
        kernel: KernelLog | None,
        smi: Callable[[], ToolResult] = gpu_tools.nvidia_smi_xml,
        diag: Callable[[int], ToolResult] = gpu_tools.dcgm_diag,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config, self.uplink, self.spool, self.kernel = config, uplink, spool, kernel
        self.smi, self.diag, self.now = smi, diag, now
        self.backoff = 0.0
        self.last_problem = ""

    # Collecting -------------------------------------------------------------------------------------------------

    def _event(self, code: str, severity: str, message: str, request: int | None = None) -> None:
        event = {
            "node": self.config.node,
            "code": code,
            "severity": severity,
            "message": message[:2000],
            "observed_at": self.now().isoformat(),
        }
        self.spool.put("json", json.dumps(event), self.config.node, request)

    def collect(self) -> None:
        if self.config.read_gpus:
            reading = self.smi()
            if reading.ok:
                self.spool.put("nvidia-smi", reading.output, self.config.node)
            else:  # a driver that stops answering is itself the most urgent thing to report
                log.warning("nvidia-smi failed: %s", reading.error)
                self._event("nvidia-smi:failed", "critical", f"nvidia-smi failed: {reading.error}")
        if self.kernel is not None:
            state = self.spool.read_state()
            position = state.setdefault("kernel", {}).setdefault(self.kernel.name, {})
            try:
                lines = self.kernel.read_new(position)
            except OSError as exc:
                log.warning("cannot read the kernel log (%s): %s", self.kernel.name, exc)
                return
            if lines:
                self.spool.put("xid", "\n".join(lines) + "\n", self.config.node)
            self.spool.write_state(state)  # after the lines are buffered: a crash between sends them twice, not never

    def run_diagnostic(self, level: int, request: int | None = None) -> None:
        log.info("running dcgmi diag -r %d%s", level, f" for request {request}" if request else "")
        result = self.diag(level)
        if result.ok:
            self.spool.put("dcgm", result.output, self.config.node, request)
        else:
            self._event("dcgm:unavailable", "warning", f"dcgmi diag -r {level} gave no report: {result.error}", request)

    # Sending ----------------------------------------------------------------------------------------------------

    def flush(self) -> Outcome:
        """Send the buffer oldest first; stop at the first entry the server cannot take now."""
        for path in self.spool.pending():
            entry = self.spool.load(path)
            if entry is None:
                self.spool.reject(path, "unreadable buffer entry")
                continue
            answer = self.uplink.post_entry(entry)
            if answer.outcome is Outcome.SENT:
                self.spool.done(path)
                self._report_problems(entry, answer.body)
            elif answer.outcome is Outcome.REFUSED:
                self.spool.reject(path, answer.detail)
            else:
                self._problem(answer.outcome, answer.detail)
                return answer.outcome
        if self.last_problem:
            log.info("the server takes events again; the buffer is empty")
            self.last_problem = ""
        return Outcome.SENT

    def _report_problems(self, entry: dict[str, Any], report: Any) -> None:
        if isinstance(report, dict) and report.get("problem_count"):
            log.warning("the server could not read part of a %s reading: %s", entry["format"], report.get("summary"))

    def _problem(self, outcome: Outcome, detail: str) -> None:
        waiting = len(self.spool.pending())
        if outcome is Outcome.UNAUTHORIZED:
            message = f"the server refused the token ({detail}); fix --token-file. {waiting} entries kept"
        else:
            message = f"cannot send ({detail}); {waiting} entries buffered, retrying"
        if message != self.last_problem:
            log.warning("%s", message)
            self.last_problem = message

    def poll(self) -> None:
        answer = self.uplink.claim(self.config.node)
        if answer.outcome is not Outcome.SENT or not isinstance(answer.body, dict):
            return
        for request in answer.body.get("requests", []):
            if request.get("kind") == "dcgm-diag":
                self.run_diagnostic(int(request["level"]), int(request["id"]))
        if answer.body.get("requests"):
            self.flush()

    # The loop ---------------------------------------------------------------------------------------------------

    def _next_backoff(self) -> float:
        self.backoff = min(self.config.max_backoff, max(self.config.min_backoff, self.backoff * 2))
        return self.backoff * random.uniform(0.8, 1.2)

    def run(self, once: bool = False, stop: threading.Event | None = None) -> int:
        """Collect and send until ``stop`` is set; with ``once``, one round and the exit status."""
        stop = stop or threading.Event()
        if self.config.run_diag:
            self.run_diagnostic(self.config.run_diag)
        next_collect = time.monotonic()
        while True:
            if time.monotonic() >= next_collect:
                self.collect()
                next_collect = time.monotonic() + self.config.interval
            outcome = self.flush()
            if outcome is Outcome.SENT:
                self.backoff = 0.0
                self.poll()
            if once:
                return 0 if outcome is Outcome.SENT and not self.spool.pending() else EXIT_BUFFERED
            until_collect = max(0.0, next_collect - time.monotonic())
            wait = until_collect if outcome is Outcome.SENT else min(self._next_backoff(), until_collect)
            if stop.wait(wait):
                return 0
