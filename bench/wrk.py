"""wrk as the load generator: the Lua script, one bounded run, and parsing its output.

Two sources are read from every run. wrk's own text (``Requests/sec``, the ``Latency
Distribution`` with its 50/75/90/99 % lines in us/ms/s/m/h, ``Non-2xx or 3xx responses``,
``Socket errors``) and one ``BENCH_RESULT`` line that the script's ``done()`` hook prints with the
exact percentiles in microseconds (wrk's text rounds to two decimals of its unit, too coarse for
sub-millisecond differences at 1 connection). The exact figures are used when present; the text
is the fallback and a cross-check.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

WRK_HINT = "wrk is not installed: apt-get install wrk (Debian/Ubuntu), then run bench/run again"

_DONE_HOOK = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d "
      .. "p50_us=%.1f p75_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
      .. "mean_us=%.1f\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
"""

_STATUS_HOOK = r"""
threads = {}
statuses = {}

setup = function(thread)
  table.insert(threads, thread)
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
"""

_STATUS_DONE = r"""
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    table.insert(parts, string.format("%d=%d", status, count))
  end
  io.write("BENCH_STATUS " .. table.concat(parts, " ") .. "\n")
"""

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)"


def wrk_path() -> str | None:
    return shutil.which("wrk")


def lua_script(method: str, body: bytes, headers: dict[str, str],
               count_statuses: bool = False) -> str:
    """A wrk script sending the same request on every connection, with the done() hook.

    `count_statuses` adds a response() hook counting answers per HTTP status (printed as one
    BENCH_STATUS line), so that a row with errors says which; it costs wrk a Lua call per
    answer, so it is left out where wrk itself is the limit (the direct scenarios).
    """

    def quote(text: str) -> str:
        # json.dumps gives a double-quoted literal whose escapes Lua reads the same way.
        return json.dumps(text, ensure_ascii=False)

    lines = [f"wrk.method = {quote(method)}", f"wrk.body = {quote(body.decode())}"]
    lines += [f"wrk.headers[{quote(name)}] = {quote(value)}" for name, value in headers.items()]
    done = _DONE_HOOK
    if count_statuses:
        lines.append(_STATUS_HOOK)
        done = done.replace("\nend\n", "\n" + _STATUS_DONE + "end\n")
    return "\n".join(lines) + "\n" + done


def to_ms(value: str, unit: str) -> float:
    """wrk's ``12.34ms`` / ``250.00us`` / ``1.02s`` as milliseconds."""
    return float(value) * _UNITS_MS[unit]


@dataclass
class WrkResult:
    connections: int
    requests: int = 0
    duration_s: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p75_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(
        default_factory=lambda: {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )
    exact: bool = False  # percentiles from the done() hook, not from wrk's rounded text
    statuses: dict[int, int] = field(default_factory=dict)  # with count_statuses only
    others_cores: float | None = None  # CPU used by processes outside the bench meanwhile
    target_cpu_s: float | None = None  # CPU seconds of the process under test meanwhile

    @property
    def cpu_ms_per_request(self) -> float | None:
        """CPU of the process under test per completed request: what one request costs it,
        far steadier than req/s when the machine is shared."""
        if self.target_cpu_s is None or self.requests <= 0:
            return None
        return self.target_cpu_s * 1000 / self.requests

    @property
    def socket_error_count(self) -> int:
        return sum(self.socket_errors.values())

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_error_count


def parse_output(text: str, connections: int) -> WrkResult:
    """wrk's --latency output (plus the optional BENCH_RESULT line) as a WrkResult."""
    result = WrkResult(connections=connections)
    found_rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.MULTILINE)
    if not found_rps:
        raise ValueError("no 'Requests/sec:' line in wrk's output")
    result.rps = float(found_rps.group(1))
    total = re.search(r"^\s*([0-9]+) requests in " + _TIME, text, re.MULTILINE)
    if total:
        result.requests = int(total.group(1))
        result.duration_s = to_ms(total.group(2), total.group(3)) / 1000
    for percent, attribute in (("50", "p50_ms"), ("75", "p75_ms"), ("90", "p90_ms"),
                               ("99", "p99_ms")):
        line = re.search(rf"^\s*{percent}(?:\.0+)?%\s+{_TIME}", text, re.MULTILINE)
        if line:
            setattr(result, attribute, to_ms(line.group(1), line.group(2)))
    latency_max = re.search(rf"^\s*Latency\s+{_TIME}\s+{_TIME}\s+{_TIME}", text, re.MULTILINE)
    if latency_max:
        result.max_ms = to_ms(latency_max.group(5), latency_max.group(6))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", text)
    if non_2xx:
        result.non_2xx = int(non_2xx.group(1))
    sockets = re.search(
        r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)", text
    )
    if sockets:
        result.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True)
        )
    exact = re.search(r"^BENCH_RESULT (.*)$", text, re.MULTILINE)
    if exact:
        values = dict(pair.split("=", 1) for pair in exact.group(1).split())
        result.requests = int(values["requests"])
        result.duration_s = int(values["duration_us"]) / 1e6
        if result.duration_s > 0:
            result.rps = result.requests / result.duration_s
        for key in ("p50", "p75", "p90", "p99", "p999"):
            setattr(result, f"{key}_ms", float(values[f"{key}_us"]) / 1000)
        result.max_ms = float(values["max_us"]) / 1000
        result.non_2xx = int(values["status"])
        result.socket_errors = {name: int(values[name])
                                for name in ("connect", "read", "write", "timeout")}
        result.exact = True
    statuses = re.search(r"^BENCH_STATUS ?(.*)$", text, re.MULTILINE)
    if statuses:
        result.statuses = {int(status): int(count) for status, count in
                           (pair.split("=", 1) for pair in statuses.group(1).split())}
    return result


async def run_wrk(url: str, script: Path, connections: int, duration_s: float,
                  timeout_s: float = 10.0) -> WrkResult:
    """One wrk run, bounded in time; wrk's output is parsed, a failure raises RuntimeError."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError(WRK_HINT)
    threads = 1 if connections == 1 else 2
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s",
            f"--timeout={timeout_s:g}s", "--latency", "-s", str(script), url]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(),
                                                timeout=duration_s + timeout_s + 30)
    except (TimeoutError, asyncio.CancelledError):
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    text = stdout.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): "
                           f"{stderr.decode(errors='replace').strip() or text.strip()}")
    try:
        return parse_output(text, connections)
    except (ValueError, KeyError) as exc:
        raise RuntimeError(f"unreadable wrk output ({exc}):\n{text.strip()}") from None
