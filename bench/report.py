"""The figures of a bench run: rows of medians, derived figures, targets, and the printed text."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.wrk import WrkResult

MB = 1_000_000  # targets speak of MB: 10^6 bytes
# Issue 14's targets: the chat route at 30% of the pass-through; added p50 at 1 connection at
# most a third of the 8.4 ms it was then.
TARGET_RATIO = 0.30
TARGET_ADDED_P50_MS = 2.8
TARGET_ADDED_P99_MS = 5.0
TARGET_SLOW_P99_MS = 250.0
TARGET_PEAK_RSS_MB = 150.0
TARGET_FLAT = 0.10
BUSY_OTHERS_CORES = 0.25  # other processes' CPU above which a row is flagged


def fmt_ms(value: float) -> str:
    if value < 10:
        return f"{value:.3f}"
    if value < 100:
        return f"{value:.2f}"
    return f"{value:.1f}"


def fmt_mb(kb: int) -> str:
    return f"{kb * 1024 / MB:.1f}"


def percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Row:
    """One scenario at one connection count: its measured runs, reported as medians."""

    label: str
    scenario: str
    connections: int
    runs: list[WrkResult]

    def _median(self, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs)

    @property
    def rps(self) -> float:
        return self._median("rps")

    @property
    def p50(self) -> float:
        return self._median("p50_ms")

    @property
    def p90(self) -> float:
        return self._median("p90_ms")

    @property
    def p99(self) -> float:
        return self._median("p99_ms")

    @property
    def others_cores(self) -> float | None:
        values = [run.others_cores for run in self.runs if run.others_cores is not None]
        return statistics.median(values) if values else None

    @property
    def cpu_ms(self) -> float | None:
        """Median CPU of the process under test per request (None for the direct rows)."""
        values = [run.cpu_ms_per_request for run in self.runs
                  if run.cpu_ms_per_request is not None]
        return statistics.median(values) if values else None

    @property
    def non_2xx(self) -> int:
        return sum(run.non_2xx for run in self.runs)

    @property
    def socket_errors(self) -> int:
        return sum(run.socket_error_count for run in self.runs)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    @property
    def statuses(self) -> dict[int, int]:
        """Answers per HTTP status over all runs (rows measured with count_statuses)."""
        total: dict[int, int] = {}
        for run in self.runs:
            for status, count in run.statuses.items():
                total[status] = total.get(status, 0) + count
        return dict(sorted(total.items()))

    @property
    def spread_pct(self) -> float:
        rates = [run.rps for run in self.runs]
        return (max(rates) - min(rates)) / self.rps * 100 if self.rps else 0.0


@dataclass
class StreamRun:
    duration_s: float
    ttfd_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    errors: int = 0
    service_cpu_s: float | None = None  # the service's CPU seconds during the run

    @property
    def rate(self) -> float:
        return len(self.total_ms) / self.duration_s if self.duration_s else 0.0

    @property
    def cpu_ms_per_stream(self) -> float | None:
        streams = len(self.total_ms) + self.errors
        if self.service_cpu_s is None or streams == 0:
            return None
        return self.service_cpu_s * 1000 / streams


@dataclass
class StreamRow:
    connections: int
    runs: list[StreamRun]

    def _median(self, values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    @property
    def rate(self) -> float:
        return self._median([run.rate for run in self.runs])

    def ttfd(self, percent: float) -> float:
        return self._median([percentile(run.ttfd_ms, percent) for run in self.runs])

    @property
    def total_p50(self) -> float:
        return self._median([percentile(run.total_ms, 50) for run in self.runs])

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    @property
    def cpu_ms(self) -> float | None:
        values = [run.cpu_ms_per_stream for run in self.runs
                  if run.cpu_ms_per_stream is not None]
        return statistics.median(values) if values else None


@dataclass
class ServiceMemory:
    label: str
    hwm_kb: int
    peak_sampled_kb: int


@dataclass
class SteadyRss:
    seconds: float
    marks: list[tuple[float, int]]  # (seconds since start, VmRSS kB)
    rps: float
    errors: int

    def at(self, second: float) -> int | None:
        for mark, kb in self.marks:
            if mark >= second:
                return kb
        return None


@dataclass
class Report:
    header: list[str]
    heading: str = ""
    rows: list[Row] = field(default_factory=list)
    stream_rows: list[StreamRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    memory: list[ServiceMemory] = field(default_factory=list)
    steady: SteadyRss | None = None
    history_rows: int | None = None
    passthrough_labels: list[str] = field(default_factory=list)

    def row(self, scenario: str, connections: int) -> Row | None:
        for row in self.rows:
            if (row.scenario == scenario or row.label == scenario) \
                    and row.connections == connections:
                return row
        return None

    def passthrough_reference(self, connections: int) -> Row | None:
        """The fastest pass-through client measured at that connection count."""
        candidates = [row for row in self.rows
                      if row.scenario == "passthrough" and row.connections == connections]
        return max(candidates, key=lambda row: row.rps, default=None)

    # the text

    def table(self) -> list[str]:
        lines: list[str] = []
        if self.rows:
            lines += ["| scenario | conns | req/s | spread | p50 ms | p90 ms | p99 ms | non-2xx "
                      "| socket errors | others' CPU | CPU ms/req |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in self.rows:
            others = "n/a" if row.others_cores is None else f"{row.others_cores:.2f}"
            cpu = "n/a" if row.cpu_ms is None else f"{row.cpu_ms:.2f}"
            lines.append(
                f"| {row.label} | {row.connections} | {row.rps:,.0f} | {row.spread_pct:.0f}% "
                f"| {fmt_ms(row.p50)} | {fmt_ms(row.p90)} | {fmt_ms(row.p99)} "
                f"| {row.non_2xx} | {row.socket_errors} | {others} | {cpu} |"
            )
        if self.stream_rows:
            if lines:
                lines.append("")
            lines += ["| stream-ttfd | streams | streams/s | TTFD p50 ms | TTFD p90 ms "
                      "| TTFD p99 ms | whole stream p50 ms | errors | CPU ms/stream |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for stream in self.stream_rows:
                cpu = "n/a" if stream.cpu_ms is None else f"{stream.cpu_ms:.2f}"
                lines.append(
                    f"| stream-ttfd | {stream.connections} | {stream.rate:,.1f} "
                    f"| {fmt_ms(stream.ttfd(50))} | {fmt_ms(stream.ttfd(90))} "
                    f"| {fmt_ms(stream.ttfd(99))} | {fmt_ms(stream.total_p50)} "
                    f"| {stream.errors} | {cpu} |"
                )
        return lines

    def derived(self) -> list[str]:
        lines: list[str] = []
        service, direct = self.row("service", 1), self.row("direct", 1)
        if service and direct:
            lines.append(
                f"added latency at 1 connection (service - direct, same run): "
                f"p50 {service.p50 - direct.p50:+.3f} ms, p99 {service.p99 - direct.p99:+.3f} ms"
            )
        for connections in (16, 64):
            service_row = self.row("service", connections)
            reference = self.passthrough_reference(connections)
            if service_row and reference and reference.rps:
                lines.append(
                    f"service / passthrough at {connections} connections: "
                    f"{service_row.rps:,.0f} / {reference.rps:,.0f} req/s "
                    f"({reference.label}) = {service_row.rps / reference.rps:.0%}"
                )
        lines += self._client_comparison()
        slow = self.row("service-200ms", 64)
        if slow:
            slow_direct = self.row("direct-200ms", 64)
            reference = f" (direct-200ms p99 {fmt_ms(slow_direct.p99)} ms)" if slow_direct else ""
            lines.append(
                f"service-200ms at 64 connections: p99 {fmt_ms(slow.p99)} ms{reference}, "
                f"errors {slow.errors} (non-2xx {slow.non_2xx}, socket {slow.socket_errors}), "
                f"{slow.rps:,.0f} req/s"
            )
        if self.memory:
            peak = max(memory.hwm_kb for memory in self.memory)
            parts = ", ".join(
                f"{memory.label} {fmt_mb(memory.hwm_kb)} MB (sampled max "
                f"{fmt_mb(memory.peak_sampled_kb)})" for memory in self.memory
            )
            lines.append(f"service peak RSS (VmHWM): {fmt_mb(peak)} MB; per instance: {parts}")
        if self.steady:
            marks = " · ".join(f"{second:.0f} s {fmt_mb(kb)}" for second, kb in self.steady.marks)
            lines.append(
                f"RSS during a {self.steady.seconds:g} s steady run at 16 connections "
                f"({self.steady.rps:,.0f} req/s, {self.steady.errors} errors), MB: {marks}"
            )
        if self.history_rows is not None:
            lines.append(f"history rows the service stored in PostgreSQL: {self.history_rows:,}")
        return lines

    def _client_comparison(self) -> list[str]:
        if len(self.passthrough_labels) < 2:
            return []
        lines = []
        for connections in sorted({row.connections for row in self.rows}):
            rows = [self.row(label, connections) for label in self.passthrough_labels]
            measured = [row for row in rows if row is not None]
            if len(measured) < 2:
                continue
            fastest = max(measured, key=lambda row: row.rps)
            slowest = min(measured, key=lambda row: row.rps)
            ratio = fastest.rps / slowest.rps if slowest.rps else math.inf
            lines.append(f"passthrough clients at {connections} connections: "
                         + ", ".join(f"{row.label} {row.rps:,.0f} req/s" for row in measured)
                         + f" (fastest: {fastest.label}, x{ratio:.2f})")
        return lines

    def targets(self) -> list[str]:
        lines = []

        def verdict(ok: bool | None, text: str) -> None:
            word = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
            lines.append(f"{word}  {text}")

        share = f"{TARGET_RATIO:.0%} of passthrough"
        for connections in (16, 64):
            service, reference = self.row("service", connections), \
                self.passthrough_reference(connections)
            if service and reference and reference.rps:
                ratio = service.rps / reference.rps
                verdict(ratio >= TARGET_RATIO and service.errors == 0,
                        f"throughput at {connections} connections ≥ {share}: "
                        f"{ratio:.0%}" + (f" ({service.errors} errors)" if service.errors else ""))
            else:
                verdict(None, f"throughput at {connections} connections ≥ {share} "
                              "(service or passthrough not measured)")
        service, direct = self.row("service", 1), self.row("direct", 1)
        if service and direct:
            verdict(service.p50 - direct.p50 <= TARGET_ADDED_P50_MS,
                    f"added latency at 1 connection, p50 ≤ {TARGET_ADDED_P50_MS:g} ms: "
                    f"{service.p50 - direct.p50:.3f} ms")
            verdict(service.p99 - direct.p99 <= TARGET_ADDED_P99_MS,
                    f"added latency at 1 connection, p99 ≤ 5 ms: "
                    f"{service.p99 - direct.p99:.3f} ms")
        else:
            verdict(None, "added latency at 1 connection (service or direct not measured)")
        slow = self.row("service-200ms", 64)
        if slow:
            verdict(slow.p99 <= TARGET_SLOW_P99_MS and slow.errors == 0,
                    f"200 ms vendor at 64 connections: p99 ≤ 250 ms and no errors: "
                    f"{fmt_ms(slow.p99)} ms, {slow.errors} errors")
        else:
            verdict(None, "200 ms vendor at 64 connections (service-200ms not measured)")
        if self.memory:
            peak_mb = max(memory.hwm_kb for memory in self.memory) * 1024 / MB
            verdict(peak_mb < TARGET_PEAK_RSS_MB, f"peak RSS < 150 MB: {peak_mb:.1f} MB")
        else:
            verdict(None, "peak RSS (the service did not run)")
        if self.steady and self.steady.marks:
            end = self.steady.marks[-1][1]
            base_second = 10.0 if self.steady.seconds > 10 else 0.0
            base = self.steady.at(base_second) or self.steady.marks[0][1]
            growth = (end - base) / base
            verdict(growth <= TARGET_FLAT,
                    f"RSS flat: end within 10% of the {base_second:.0f} s mark: "
                    f"{fmt_mb(base)} → {fmt_mb(end)} MB ({growth:+.1%})")
        else:
            verdict(None, "RSS flat (no steady run)")
        return lines

    def error_notes(self) -> list[str]:
        notes = []
        busy = [row for row in self.rows
                if row.others_cores is not None and row.others_cores >= BUSY_OTHERS_CORES]
        if busy:
            cores = [row.others_cores or 0.0 for row in busy]
            which = ("every row" if len(busy) == len(self.rows) else
                     ", ".join(f"{row.label}@{row.connections}" for row in busy))
            notes.append(f"processes outside the bench used {min(cores):.2f} to {max(cores):.2f} "
                         f"cores during {which}: such rows are lower and noisier than on an "
                         "idle machine")
        for row in self.rows:
            failed = {status: count for status, count in row.statuses.items()
                      if not 200 <= status < 400}
            if failed:
                statuses = ", ".join(f"HTTP {status} x {count:,}"
                                     for status, count in failed.items())
                notes.append(f"{row.label} at {row.connections} connections answered "
                             f"{statuses}: its req/s counts those answers too")
        return notes

    def text(self) -> str:
        notes = self.notes + self.error_notes()
        derived = self.derived()
        parts = [*self.header, "", *self.table(), "", "```text",
                 *([*derived, ""] if derived else []), *self.targets()]
        if notes:
            parts += ["", *(f"note: {note}" for note in notes)]
        parts.append("```")
        return "\n".join(parts) + "\n"


RESULTS_PREAMBLE = """# Bench results

Each run of `bench/run` appends its table here: date (UTC), commit (`dirty` when the working
tree had uncommitted changes outside this file), the command, the machine, then the table, the
derived figures and the targets. See `bench/README.md` for how to read them.
"""


def append_results(path: Path, heading: str, text: str) -> None:
    existing = path.read_text() if path.exists() else RESULTS_PREAMBLE
    if not existing.endswith("\n"):
        existing += "\n"
    path.write_text(f"{existing}\n## {heading}\n\n{text}")
