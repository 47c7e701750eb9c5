"""`bench/run --profile`: the service under load, sampled by py-spy.

Two py-spy samplers attach to the running service (non-blocking, so the service is not paused):
one writes the flame graph `bench/out/profile-<date>.svg`, the other the collapsed stacks
(`.txt`), which are summarised here: CPU share per package (self and inclusive), the busiest
functions, and the service's own functions by inclusive time.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY_SPY_HINT = ("py-spy is not installed; get it with `.venv/bin/pip install py-spy` "
               "(in a venv made by uv: `uv pip install --python .venv/bin/python py-spy`); "
               "it stays out of the lock files")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]+?):(?P<line>\d+)\)$")


def py_spy_path() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    local = REPO / ".venv" / "bin" / "py-spy"
    return str(local) if local.exists() else None


def record_argv(py_spy: str, pid: int, seconds: float, output: Path, fmt: str) -> list[str]:
    return [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", "200", "--nonblocking", "--format", fmt, "--output", str(output)]


def _package(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib"):
                path = path.split("/", 1)[1] if "/" in path else path
            break
    if path.startswith("<"):
        return "(builtin)"
    if "/" not in path and not path.endswith(".py"):
        return "(entry script)"
    head = path.lstrip("/").split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head


def _idle(leaf: re.Match[str]) -> bool:
    """A thread-pool worker waiting for work: py-spy's non-blocking mode cannot tell it is idle."""
    return leaf["function"] == "_worker" and leaf["path"].endswith("concurrent/futures/thread.py")


def _below_event_loop(frames: list[re.Match[str]]) -> list[re.Match[str]]:
    """The frames above the event loop's entry (`llm-service serve` down to `Runner.run`),
    which are on every stack that reaches them and say nothing about where the time goes."""
    for index, frame in enumerate(frames):
        if frame["function"] == "Runner.run" and frame["path"].endswith("asyncio/runners.py"):
            return frames[index + 1:]
    return frames


def summarize(raw_path: Path, top: int = 12) -> list[str]:
    """Where the CPU time goes, from py-spy's collapsed stacks."""
    self_by_package: Counter[str] = Counter()
    inclusive_by_package: Counter[str] = Counter()
    self_by_function: Counter[str] = Counter()
    service_inclusive: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [found for found in map(_FRAME.match, stack.split(";")) if found]
        if not frames or _idle(frames[-1]):
            continue
        total += count
        leaf = frames[-1]
        leaf_package = _package(leaf["path"])
        self_by_package[leaf_package] += count
        self_by_function[f"{leaf['function']} ({leaf['path']})"] += count
        work = _below_event_loop(frames)
        for package in {_package(frame["path"]) for frame in work}:
            inclusive_by_package[package] += count
        for name in {f"{frame['function']} ({frame['path']})" for frame in work
                     if _package(frame["path"]) == "llm_service"}:
            service_inclusive[name] += count
    if not total:
        return ["profile: no samples (was the service busy?)"]

    def share(counter: Counter[str], limit: int) -> list[str]:
        return [f"  {count / total:6.1%}  {name}" for name, count in counter.most_common(limit)]

    return [f"profile: {total} samples of the service's busy time (idle excluded); time in "
            "native code (uvloop's loop and transports, httptools, asyncpg's protocol) is counted "
            "at the nearest Python frame, e.g. asyncio Runner.run for the event loop itself",
            "CPU by package, self (the package's own code at the top of the stack):",
            *share(self_by_package, top),
            "CPU by package, inclusive (any frame of the package on the stack; a lower bound: "
            "py-spy shows a coroutine resumed by the C event loop without its callers):",
            *share(inclusive_by_package, top),
            "busiest functions (self):", *share(self_by_function, top),
            "llm_service functions (inclusive):", *share(service_inclusive, top)]
