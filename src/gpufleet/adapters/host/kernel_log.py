"""New kernel log lines since the last read, from a log file, the journal, or /dev/kmsg; only Xid/SXid lines.

Each source remembers where it stopped in a small state dict the agent keeps on disk, so a restart neither re-sends
everything nor loses what arrived while it was down:

- a file (``/var/log/kern.log``, ``/var/log/messages``): byte offset and inode; a rotated or truncated file is read
  again from its start;
- the journal: ``journalctl -k -o short-iso-precise`` with ``--cursor-file``; the first read covers the current boot;
- ``/dev/kmsg``: the last sequence number and the boot id; times since boot become wall-clock times.

Lines keep a wall-clock time and the host name, so the server reads them like any syslog or journal line.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from gpufleet.adapters.formats.xid import mentions_xid

MAX_READ_BYTES = 16 * 1024 * 1024


class KernelLog(Protocol):
    name: str

    def read_new(self, state: dict[str, Any]) -> list[str]: ...


class FileLog:
    """A kernel log file; complete lines only, so a line being written is read whole next time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"file {path}"

    def read_new(self, state: dict[str, Any]) -> list[str]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        offset = int(state.get("offset", 0))
        if state.get("inode") != stat.st_ino or stat.st_size < offset:
            offset = 0  # rotated or truncated: the file is new to us
        with self.path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read(MAX_READ_BYTES)
        end = chunk.rfind(b"\n")
        if end < 0:
            state.update(inode=stat.st_ino, offset=offset)
            return []
        state.update(inode=stat.st_ino, offset=offset + end + 1)
        text = chunk[: end + 1].decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if mentions_xid(line)]


class JournalLog:
    """The kernel messages in the systemd journal, through journalctl's own cursor file."""

    name = "journal"

    def __init__(self, cursor_file: Path, journalctl: str = "journalctl") -> None:
        self.cursor_file = cursor_file
        self.journalctl = journalctl

    def read_new(self, state: dict[str, Any]) -> list[str]:
        argv = [self.journalctl, "-k", "-o", "short-iso-precise", "--no-pager", f"--cursor-file={self.cursor_file}"]
        if not self.cursor_file.exists():
            argv.append("-b")  # first read: this boot only; afterwards the cursor carries across reboots
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OSError(f"journalctl failed: {exc}") from None
        if done.returncode not in (0, 1):  # 1: no new entries on some versions
            raise OSError(f"journalctl exited {done.returncode}: {' '.join(done.stderr.split())[:200]}")
        return [line for line in done.stdout.splitlines() if mentions_xid(line)]


def _boot_time(proc_stat: Path) -> datetime:
    for line in proc_stat.read_text().splitlines():
        if line.startswith("btime "):
            return datetime.fromtimestamp(int(line.split()[1]), UTC)
    raise OSError(f"no btime in {proc_stat}")


class KmsgLog:
    """``/dev/kmsg`` records (``prio,seq,usec,flags;text``) after the last sequence number of this boot."""

    name = "kmsg"

    def __init__(
        self,
        host: str,
        path: Path = Path("/dev/kmsg"),
        proc_stat: Path = Path("/proc/stat"),
        boot_id: Path = Path("/proc/sys/kernel/random/boot_id"),
    ) -> None:
        self.host, self.path, self.proc_stat, self.boot_id = host, path, proc_stat, boot_id

    def read_new(self, state: dict[str, Any]) -> list[str]:
        boot = self.boot_id.read_text().strip() if self.boot_id.exists() else ""
        if state.get("boot") != boot:
            state.update(boot=boot, seq=-1)
        last = int(state.get("seq", -1))
        booted = _boot_time(self.proc_stat)
        lines: list[str] = []
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    record = os.read(fd, 8192)
                except OSError as exc:
                    if exc.errno == errno.EAGAIN:
                        break
                    if exc.errno == errno.EPIPE:  # overwritten in the ring buffer before we read it
                        continue
                    raise
                if not record:
                    break
                for raw in record.decode("utf-8", errors="replace").splitlines():
                    line = self._line(raw, last, booted)
                    if line is None:
                        continue
                    last, text = line
                    if mentions_xid(text):
                        lines.append(text)
        finally:
            os.close(fd)
        state["seq"] = last
        return lines

    def _line(self, raw: str, last: int, booted: datetime) -> tuple[int, str] | None:
        head, _, message = raw.partition(";")
        fields = head.split(",")
        if len(fields) < 3 or not fields[1].isdigit() or not fields[2].isdigit():
            return None  # a continuation line (" KEY=value") or not a record
        seq = int(fields[1])
        if seq <= last:
            return None
        at = booted + timedelta(microseconds=int(fields[2]))
        return seq, f"{at.isoformat().replace('+00:00', 'Z')} {self.host} kernel: {message}"


def pick(kind: str, host: str, state_dir: Path, path: Path | None = None) -> KernelLog | None:
    """The kernel log source to read: the file given, else the journal, else /dev/kmsg; None when none is there."""
    if kind == "none":
        return None
    if path is not None or kind == "file":
        if path is None:
            raise ValueError("a kernel log file is needed with --kernel-source file")
        return FileLog(path)
    if kind in ("auto", "journal") and shutil.which("journalctl"):
        return JournalLog(state_dir / "journal.cursor")
    if kind in ("auto", "kmsg") and os.access("/dev/kmsg", os.R_OK):
        return KmsgLog(host)
    return None
