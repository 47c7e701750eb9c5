"""Child processes of a bench run: started on 127.0.0.1, bounded, always stopped.

Every child gets its own session (Ctrl-C reaches only the runner, which then stops them in
order) and, on Linux, a parent-death signal, so nothing outlives a runner that is killed.
Stopping is SIGTERM, then SIGKILL after five seconds, by pid only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

STOP_GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the runner goes away (Linux; elsewhere a no-op)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_for_line(self, pattern: str, timeout_s: float) -> re.Match[str]:
        """The first match of `pattern` in the child's log, waiting at most `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        compiled = re.compile(pattern)
        while True:
            with contextlib.suppress(OSError):
                found = compiled.search(self.log_path.read_text(errors="replace"))
                if found:
                    return found
            if not self.running:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} printed no {pattern!r} in {timeout_s:g} s:\n"
                                   f"{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S; only this child's pid."""
        if not self.running:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def start_child(name: str, argv: Sequence[str], log_path: Path,
                      env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Child:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return Child(name=name, process=process, log_path=log_path)


async def wait_http(url: str, timeout_s: float, child: Child | None = None) -> None:
    """Poll `url` until it answers 200, the child exits, or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    async with httpx2.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if child is not None and not child.running:
                raise RuntimeError(f"{child.name} exited ({child.process.returncode}):\n"
                                   f"{child.log_tail()}")
            try:
                answer = await client.get(url)
                if answer.status_code == 200:
                    return
                last = f"HTTP {answer.status_code}"
            except httpx2.HTTPError as exc:
                last = type(exc).__name__
            await asyncio.sleep(0.2)
    tail = f"\n{child.log_tail()}" if child is not None else ""
    raise RuntimeError(f"{url} not ready after {timeout_s:g} s ({last}){tail}")


def read_memory_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in kB from /proc/<pid>/status, None once it is gone."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    values[key] = int(value.split()[0])
    except (OSError, ValueError):
        return None
    if "VmRSS" not in values:
        return None
    return values["VmRSS"], values.get("VmHWM", values["VmRSS"])


class RssSampler:
    """Samples a process's RSS every `interval_s` while it lives; keeps the peak (VmHWM too)."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []  # (monotonic time, VmRSS kB)
        self.hwm_kb = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def sample(self) -> int | None:
        memory = read_memory_kb(self.pid)
        if memory is None:
            return None
        rss, hwm = memory
        self.samples.append((time.monotonic(), rss))
        self.hwm_kb = max(self.hwm_kb, hwm, rss)
        return rss

    async def _run(self) -> None:
        while self.sample() is not None and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval_s)

    async def stop(self) -> None:
        self.sample()
        self._stopping.set()
        if self._task is not None:
            await self._task

    @property
    def peak_sampled_kb(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


def loaded_modules(pid: int, names: Sequence[str]) -> dict[str, bool]:
    """Which of the extension modules `names` are mapped into the process (from /proc maps)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return {}
    return {name: f"/{name}/" in maps for name in names}


def clean_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without the service's own settings (they would leak in) and without
    PYTHONPATH, so the service runs on exactly what the project's .venv installs."""
    prefixes = ("LLM_", "DB_", "JWT_", "ENCRYPTION_")
    names = {"DATABASE_URL", "REDIS_URL", "LOG_LEVEL", "CORS_ORIGINS", "PYTHONPATH",
             "PYTHONHOME"}
    source = os.environ if base is None else base
    return {key: value for key, value in source.items()
            if not key.upper().startswith(prefixes) and key.upper() not in names}


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_ticks(pid: int | str) -> int:
    """CPU ticks of a process and of its children it has waited for (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14 to 17
    return sum(int(value) for value in fields[11:15])


def _busy_ticks() -> int:
    """Busy CPU ticks of the whole machine: user, nice, system, irq, softirq, steal."""
    try:
        with open("/proc/stat") as stat:
            values = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return user + nice + system + irq + softirq + steal


@dataclass
class CpuMark:
    at: float
    busy: int
    ours: int


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) a process has used so far; 0 once it is gone."""
    return _process_ticks(pid) / CLOCK_TICKS


class CpuAccount:
    """How much CPU processes outside the bench used while it measured, in cores.

    "Ours" is the runner with the children it has reaped (every wrk run), the children that
    live through a measurement (fake vendors, passthrough, service) and the PostgreSQL backends
    serving the bench database; everything else busy on the machine is "others". On 2 cores a
    few tenths of a core taken by others already moves the figures.
    """

    def mark(self, pids: Sequence[int]) -> CpuMark:
        ours = _process_ticks("self") + sum(_process_ticks(pid) for pid in pids)
        return CpuMark(time.monotonic(), _busy_ticks(), ours)

    @staticmethod
    def others_cores(start: CpuMark, end: CpuMark) -> float:
        elapsed = end.at - start.at
        if elapsed <= 0:
            return 0.0
        others = (end.busy - start.busy) - (end.ours - start.ours)
        return max(0.0, others / CLOCK_TICKS / elapsed)
