"""Putting an agent together from its command-line options: which tools the host has, which kernel log to read."""

from __future__ import annotations

from pathlib import Path

from gpufleet.adapters.host import gpu_tools, kernel_log
from gpufleet.agent.runtime import Agent, AgentConfig
from gpufleet.agent.spool import Spool
from gpufleet.agent.uplink import Uplink


def has_nvidia_smi() -> bool:
    return gpu_tools.available(gpu_tools.NVIDIA_SMI)


def build_agent(
    config: AgentConfig,
    server: str,
    token: str,
    buffer: Path,
    kernel_kind: str = "auto",
    kernel_path: Path | None = None,
    timeout: float = 30.0,
) -> tuple[Agent, str]:
    """The agent, and a line saying where it reads the kernel log (or that it reads none)."""
    spool = Spool(buffer)
    source = kernel_log.pick(kernel_kind, config.node, buffer, kernel_path)
    described = f"kernel log: {source.name}" if source else "kernel log: none found (no journalctl, no /dev/kmsg)"
    return Agent(config, Uplink(server, token, timeout), spool, source), described
