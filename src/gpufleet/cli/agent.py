"""`gpufleet agent`: run on a GPU host; send its nvidia-smi readings, Xid lines and DCGM diagnostics to the server."""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gpufleet.agent.runtime import AgentConfig
from gpufleet.agent.setup import build_agent, has_nvidia_smi
from gpufleet.cli.output import EXIT_BAD_INPUT, CliError

NO_GPU = (
    "no NVIDIA GPU here: nvidia-smi is not on PATH; run the agent on a GPU host, "
    "or pass --no-gpu-ok to send only the kernel log"
)
log = logging.getLogger("gpufleet.agent")


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of each record, never to a stream that has since closed."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def _configure_logging() -> None:
    # Only the agent's own logger: configuring the root logger would leak into every library and every later command.
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("gpufleet agent: %(message)s"))
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


class KernelSource(StrEnum):
    AUTO = "auto"
    JOURNAL = "journal"
    KMSG = "kmsg"
    FILE = "file"
    NONE = "none"


def _default_buffer() -> Path:
    system = Path("/var/lib/gpufleet-agent")
    if os.access(system if system.exists() else system.parent, os.W_OK):
        return system
    return Path(os.environ.get("XDG_STATE_HOME", str(Path.home() / ".local" / "state"))) / "gpufleet-agent"


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise CliError(f"cannot read the token file {path}: {exc.strerror}", EXIT_BAD_INPUT) from None
    if not token or len(token.split()) != 1:
        raise CliError(f"the token file {path} must hold one token on one line", EXIT_BAD_INPUT)
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the token file %s can be read by other users; chmod 600 it", path)
    return token


def agent(
    server: Annotated[
        str, typer.Option("--server", envvar="GPUFLEET_SERVER", help="The gpufleet API, e.g. https://gpufleet:8000.")
    ],
    token_file: Annotated[
        Path,
        typer.Option("--token-file", envvar="GPUFLEET_TOKEN_FILE", help="A file holding an operator token."),
    ],
    node: Annotated[
        str | None, typer.Option("--node", help="This host's name in the inventory (default: its hostname).")
    ] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between readings.")] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit: 0 all sent, 3 still buffered.")] = False,
    buffer: Annotated[
        Path | None,
        typer.Option(
            "--buffer", help="Where readings wait while the server is unreachable (default /var/lib/gpufleet-agent)."
        ),
    ] = None,
    kernel_log: Annotated[
        Path | None, typer.Option("--kernel-log", help="Read Xid lines from this file (remembering its offset).")
    ] = None,
    kernel_source: Annotated[
        KernelSource,
        typer.Option("--kernel-source", case_sensitive=False, help="Where to read Xid lines; auto: journal, kmsg."),
    ] = KernelSource.AUTO,
    run_diag: Annotated[
        int | None, typer.Option("--run-diag", min=1, max=4, help="Run dcgmi diag -r LEVEL once at start.")
    ] = None,
    no_gpu_ok: Annotated[
        bool, typer.Option("--no-gpu-ok", help="Without nvidia-smi, send only the kernel log instead of exiting.")
    ] = False,
    max_backoff: Annotated[
        float, typer.Option("--max-backoff", min=0.1, help="Longest wait between retries, in seconds.")
    ] = 300.0,
) -> None:
    """Run on a GPU host: read nvidia-smi and new kernel Xid lines every --interval, run DCGM diagnostics when the
    server asks, and post it all with the token. While the server is unreachable, readings wait in --buffer and are
    retried with backoff. Without nvidia-smi it says so and exits 1, unless --no-gpu-ok."""
    _configure_logging()
    gpus = has_nvidia_smi()
    if not gpus and not no_gpu_ok:
        raise CliError(NO_GPU)
    if not gpus:
        log.warning("nvidia-smi is not on PATH: sending the kernel log only")
    token = _read_token(token_file)
    config = AgentConfig(
        node=node or socket.gethostname(),
        interval=interval,
        read_gpus=gpus,
        run_diag=run_diag,
        min_backoff=min(1.0, max_backoff),
        max_backoff=max_backoff,
    )
    source = None if kernel_source is KernelSource.NONE else kernel_source.value
    the_agent, kernel_line = build_agent(
        config, server, token, buffer or _default_buffer(), source or "none", kernel_log
    )
    log.info("node %s, server %s, every %gs; %s", config.node, server, interval, kernel_line)
    stop = threading.Event()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if main_thread else None
    try:
        code = the_agent.run(once=once, stop=stop)
    except KeyboardInterrupt:
        code = 0
    finally:
        the_agent.uplink.close()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    if code:
        raise typer.Exit(code)
