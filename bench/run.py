"""bench/run: the whole benchmark in one command; prints a table and appends it to RESULTS.md.

Scenarios (each at every `--connections`, `--duration` s, `--repeat` times, medians reported,
after a `--warmup` s warm-up):

  direct         wrk straight at the fake vendor (the cost of the vendor and of wrk)
  passthrough    wrk at bench/passthrough.py, one row per client (httpx2, aiohttp)
  service        wrk at llm-service `POST /llm/chat/openai`: JWT, stored encrypted key,
                 history written to PostgreSQL
  service-200ms  the same against a second fake vendor that waits --delay-ms per answer
  direct-200ms   wrk straight at that slow fake vendor, for reference
  stream-ttfd    time to first delta of `POST /llm/chat/openai/stream` (skipped while the
                 route answers 404/405)
  rss            a --rss-seconds steady run at 16 connections, RSS read every 10 s

Progress goes to stderr; the table, derived figures and targets go to stdout and, unless
--no-record, to bench/RESULTS.md with the date (UTC) and the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx2

from bench import passthrough, profile, stream
from bench.procs import (
    Child,
    CpuAccount,
    RssSampler,
    clean_env,
    cpu_seconds,
    free_port,
    loaded_modules,
    read_memory_kb,
    start_child,
    wait_http,
)
from bench.report import Report, Row, ServiceMemory, SteadyRss, StreamRow, append_results
from bench.wrk import WRK_HINT, WrkResult, lua_script, run_wrk, wrk_path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
OUT = BENCH / "out"
RESULTS = BENCH / "RESULTS.md"
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
LLM_SERVICE = str(VENV_BIN / "llm-service")

SCENARIOS = ("direct", "passthrough", "service", "service-200ms", "direct-200ms",
             "stream-ttfd", "rss")
ADMIN_DB_URL = "postgresql://postgres@127.0.0.1:5432/test"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
IDLE_LOAD = 0.5
JWT_SECRET = "bench-jwt-secret-0123456789abcdef-0123456789abcdef"
API_KEY = "sk-bench-key-0123456789"
CHAT_BODY = json.dumps({
    "message": "Hello, how are you?",
    "history": [{"role": "user", "content": "Previous message"},
                {"role": "assistant", "content": "Previous response"}],
}).encode()
VENDOR_BODY = json.dumps({
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "Previous message"},
                 {"role": "assistant", "content": "Previous response"},
                 {"role": "user", "content": "Hello, how are you?"}],
    "temperature": 0.7,
    "max_completion_tokens": 2048,
}).encode()
# All the bench's traffic comes from one user: lift that user's rate limits and cap on chats in
# flight (issue 5) so that none is refused, while the limiter still does its work per request.
# One-second windows keep the limiter's per-user event list as short as in real use.
SERVICE_LIMITS_ENV = {
    "RATE_LIMIT_CHAT": "1000000/second",
    "RATE_LIMIT_DEFAULT": "1000000/second",
    "LLM_MAX_CONCURRENT_CHATS_PER_USER": "100000",
}
JSON_HEADERS = {"Content-Type": "application/json"}
VENDOR_HEADERS = {**JSON_HEADERS, "Authorization": f"Bearer {API_KEY}"}


def progress(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    duration: float
    repeat: int
    warmup: float
    connections: list[int]
    scenarios: list[str]
    rss_seconds: float
    delay_ms: float
    stream_gap_ms: float
    passthrough_clients: list[str]
    admin_db_url: str
    service_env: dict[str, str]
    record: bool
    profile: bool
    ref: str | None
    command: str


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a short try: --duration 3 --repeat 1 --rss-seconds 15")
    parser.add_argument("--duration", type=float, help="seconds per measured run (10)")
    parser.add_argument("--repeat", type=int, help="measured runs per combination (3)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of warm-up before each scenario and connection count (2)")
    parser.add_argument("--connections", default="1,16,64", help="comma-separated (1,16,64)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--rss-seconds", type=float,
                        help="length of the steady RSS run at 16 connections (60; 0 skips it)")
    parser.add_argument("--delay-ms", type=float, default=200.0,
                        help="the slow fake vendor's wait per answer (200)")
    parser.add_argument("--stream-gap-ms", type=float, default=20.0,
                        help="the fake vendor's pause between stream events (20)")
    parser.add_argument("--passthrough-client", choices=("auto", *passthrough.CLIENTS),
                        default="auto",
                        help="auto (default): measure every importable client, compare against "
                             "the fastest; or one client")
    parser.add_argument("--admin-db-url",
                        default=os.environ.get("BENCH_ADMIN_DB_URL", ADMIN_DB_URL),
                        help="PostgreSQL URL used to create and drop the bench database "
                             "(env BENCH_ADMIN_DB_URL; default %(default)s)")
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra environment variable for the service (repeatable); "
                             "overrides the bench's own, e.g. RATE_LIMIT_CHAT=100/hour")
    parser.add_argument("--ref", metavar="REV",
                        help="run the service from `git archive REV` (a commit, tag or branch) "
                             "instead of the working tree, which may be mid-edit")
    parser.add_argument("--no-record", action="store_true",
                        help="print only; do not append to bench/RESULTS.md")
    parser.add_argument("--profile", action="store_true",
                        help="only the service scenario at 16 connections under py-spy, "
                             "writing bench/out/profile-<date>.svg")
    args = parser.parse_args(argv)
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; pick from {', '.join(SCENARIOS)}")
    try:
        connections = sorted({int(value) for value in args.connections.split(",") if value})
    except ValueError:
        parser.error("--connections takes comma-separated integers")
    if not connections or min(connections) < 1:
        parser.error("--connections needs positive integers")
    service_env = {}
    for item in args.service_env:
        name, equals, value = item.partition("=")
        if not equals or not name:
            parser.error(f"--service-env takes NAME=VALUE, not {item!r}")
        service_env[name] = value
    clients = (list(passthrough.CLIENTS) if args.passthrough_client == "auto"
               else [args.passthrough_client])
    command = "bench/run" + "".join(f" {arg}" for arg in (argv or sys.argv[1:]))
    return Options(
        duration=args.duration or (3.0 if args.quick else 10.0),
        repeat=args.repeat or (1 if args.quick else 3),
        warmup=args.warmup,
        connections=connections,
        scenarios=scenarios,
        rss_seconds=args.rss_seconds if args.rss_seconds is not None
        else (15.0 if args.quick else 60.0),
        delay_ms=args.delay_ms,
        stream_gap_ms=args.stream_gap_ms,
        passthrough_clients=clients,
        admin_db_url=args.admin_db_url,
        service_env=service_env,
        record=not args.no_record and not args.profile,
        profile=args.profile,
        ref=args.ref,
        command=command,
    )


# ---- facts about the machine and the code


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=10).stdout.strip()


def git_revision() -> str:
    """`git rev-parse --short HEAD`, plus `dirty` when the tree has uncommitted changes."""
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    changes = _git("status", "--porcelain", "--", ".", ":!bench/RESULTS.md")
    return f"{head} dirty" if changes else head


def tree_fingerprint() -> str:
    """Changes when the code does, committed or not (two dirty trees can differ)."""
    state = "\n".join((_git("rev-parse", "HEAD"),
                       _git("status", "--porcelain", "--", ".", ":!bench/RESULTS.md"),
                       _git("diff", "HEAD", "--", ".", ":!bench/RESULTS.md")))
    return hashlib.sha1(state.encode(), usedforsecurity=False).hexdigest()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_load() -> float | None:
    """The 1-minute load average, before the bench starts anything."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wrk_version() -> str:
    wrk = wrk_path()
    if wrk is None:
        return "missing"
    output = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    first = (output.stdout or output.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk"


# ---- the bench run


class Bench:
    def __init__(self, options: Options, stack: contextlib.AsyncExitStack, work: Path) -> None:
        self.options = options
        self.stack = stack
        self.work = work
        self.report = Report(header=[])
        self.fast_vendor = ""
        self.slow_vendor = ""
        self.db_name: str | None = None
        self.token = ""
        self.encryption_key = secrets.token_hex(32)  # what `llm-service gen-key` prints
        self.service_facts = ""
        # (moment, revision, fingerprint): another engineer may be changing the tree meanwhile
        self.revisions: list[tuple[str, str, str]] = []
        self.postgres_version = ""
        self.service_src: Path | None = None  # a `git archive` of --ref, else the working tree
        self.children: list[Child] = []  # what lives through measurements, for CpuAccount
        self.cpu = CpuAccount()

    def wants(self, *names: str) -> bool:
        return any(name in self.options.scenarios for name in names)

    # helpers that start things; every one registers its own stop

    async def start_fake(self, name: str, delay_ms: float) -> str:
        child = await start_child(
            name,
            [PYTHON, "-m", "bench.fake_vendor", "--port", "0", "--delay-ms", f"{delay_ms:g}",
             "--stream-gap-ms", f"{self.options.stream_gap_ms:g}", "--max-seconds", "3600"],
            self.work / f"{name}.log", cwd=REPO)
        self.stack.push_async_callback(child.stop)
        self.children.append(child)
        found = await child.wait_for_line(r"listening on (http://127\.0\.0\.1:\d+)", 15)
        progress(f"{name} pid {child.pid} at {found.group(1)}")
        return found.group(1)

    def script(self, name: str, body: bytes, headers: dict[str, str],
               count_statuses: bool = True) -> Path:
        path = self.work / f"{name}.lua"
        path.write_text(lua_script("POST", body, headers, count_statuses))
        return path

    async def measure(self, label: str, scenario: str, url: str, script: Path,
                      connections: Sequence[int] | None = None,
                      target: int | None = None) -> None:
        """wrk at each connection count; `target` is the pid of the process under test, whose
        CPU per request is reported."""
        options = self.options
        for count in connections or options.connections:
            progress(f"{label} at {count} connections: {options.warmup:g} s warm-up")
            await run_wrk(url, script, count, options.warmup)
            runs: list[WrkResult] = []
            for index in range(options.repeat):
                result = await self.wrk(url, script, count, options.duration, target)
                runs.append(result)
                progress(f"{label} at {count} connections, run {index + 1}/{options.repeat}: "
                         f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.3f} ms, "
                         f"p99 {result.p99_ms:.3f} ms, errors {result.errors}, "
                         f"others' CPU {result.others_cores or 0:.2f} cores")
            self.report.rows.append(Row(label, scenario, count, runs))

    async def wrk(self, url: str, script: Path, connections: int, seconds: float,
                  target: int | None = None) -> WrkResult:
        """One measured wrk run, with the CPU that processes outside the bench used meanwhile
        and the CPU of the process under test (`target`)."""
        pids = [child.pid for child in self.children if child.running]
        pids += await self.backend_pids()
        start = self.cpu.mark(pids)
        target_start = cpu_seconds(target) if target is not None else 0.0
        result = await run_wrk(url, script, connections, seconds)
        if target is not None:
            result.target_cpu_s = cpu_seconds(target) - target_start
        result.others_cores = self.cpu.others_cores(start, self.cpu.mark(pids))
        return result

    # the database

    async def backend_pids(self) -> list[int]:
        """The PostgreSQL backends serving the bench database (its work is the bench's)."""
        if self.db_name is None:
            return []
        with contextlib.suppress(Exception):
            connection = await asyncpg.connect(self.options.admin_db_url, timeout=10)
            try:
                rows = await connection.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.db_name)
                return [int(row["pid"]) for row in rows]
            finally:
                await connection.close()
        return []

    def db_url(self, name: str) -> str:
        parts = urlsplit(self.options.admin_db_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))

    async def create_database(self) -> None:
        name = f"llm_bench_{secrets.token_hex(4)}"
        connection = await asyncpg.connect(self.options.admin_db_url, timeout=10)
        try:
            self.postgres_version = await connection.fetchval("SHOW server_version")
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        self.db_name = name
        self.stack.push_async_callback(self.drop_database)
        progress(f"created database {name}")

    async def drop_database(self) -> None:
        if self.db_name is None:
            return
        with contextlib.suppress(Exception):
            connection = await asyncpg.connect(self.options.admin_db_url, timeout=10)
            try:
                self.report.history_rows = await self._count_history()
                await connection.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
                progress(f"dropped database {self.db_name}")
            finally:
                await connection.close()
        self.db_name = None

    async def _count_history(self) -> int | None:
        assert self.db_name is not None
        with contextlib.suppress(Exception):
            connection = await asyncpg.connect(self.db_url(self.db_name), timeout=10)
            try:
                return int(await connection.fetchval("SELECT count(*) FROM llm_chat_history"))
            finally:
                await connection.close()
        return None

    # the service

    def service_env(self, vendor_url: str, port: int) -> dict[str, str]:
        assert self.db_name is not None
        env = clean_env()
        env.update({
            "LLM_ENV": "development",
            "DATABASE_URL": self.db_url(self.db_name),
            "LLM_MIGRATE_ON_START": "true",
            "JWT_SECRET": JWT_SECRET,
            "ENCRYPTION_KEY": self.encryption_key,
            "LLM_DATA_DIR": str(self.work / "data"),
            "LLM_SERVICE_HOST": "127.0.0.1",
            "LLM_SERVICE_PORT": str(port),
            "LLM_OPENAI_BASE_URL": f"{vendor_url}/v1",
            "LOG_LEVEL": "WARNING",
            **SERVICE_LIMITS_ENV,
            **self.options.service_env,
        })
        if self.service_src is not None:
            env["PYTHONPATH"] = str(self.service_src / "src")  # ahead of the editable install
        return env

    @contextlib.asynccontextmanager
    async def service(self, label: str, vendor_url: str) -> AsyncIterator[tuple[str, Child]]:
        port = free_port()
        env = self.service_env(vendor_url, port)
        self.revisions.append((f"{label} start", git_revision(), tree_fingerprint()))
        child = await start_child(label, [LLM_SERVICE, "serve"], self.work / f"{label}.log",
                                  env=env, cwd=REPO)
        self.children.append(child)
        sampler = RssSampler(child.pid)
        sampler.start()
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_http(f"{url}/health/ready", 90, child)
            progress(f"{label} pid {child.pid} ready at {url} (vendor {vendor_url})")
            if not self.token:
                self.token = await self._token(env)
            await self._configure(url)
            if not self.service_facts:
                self.service_facts = self._describe_service(child.pid)
            yield url, child
        finally:
            await sampler.stop()
            await child.stop()
            if sampler.samples:
                self.report.memory.append(
                    ServiceMemory(label, sampler.hwm_kb, sampler.peak_sampled_kb))

    async def _token(self, env: dict[str, str]) -> str:
        process = await asyncio.create_subprocess_exec(
            LLM_SERVICE, "token", "--user-id", "1", env=env, cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        lines = [line for line in stdout.decode().splitlines() if line.strip()]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"llm-service token failed: {stderr.decode().strip()}")
        return lines[-1].strip()

    @property
    def auth_headers(self) -> dict[str, str]:
        return {**JSON_HEADERS, "Authorization": f"Bearer {self.token}"}

    async def _configure(self, url: str) -> None:
        async with httpx2.AsyncClient(timeout=30.0) as client:
            saved = await client.post(f"{url}/llm/config/openai", headers=self.auth_headers,
                                      content=json.dumps({"apiKey": API_KEY, "model": "gpt-4o"}))
            if saved.status_code != 200:
                raise RuntimeError(f"saving the config: HTTP {saved.status_code} {saved.text}")
            chat = await client.post(f"{url}/llm/chat/openai", headers=self.auth_headers,
                                     content=CHAT_BODY)
            if chat.status_code != 200 or "response" not in chat.json():
                raise RuntimeError(f"a first chat failed: HTTP {chat.status_code} {chat.text}")

    def _describe_service(self, pid: int) -> str:
        loaded = loaded_modules(pid, ["uvloop", "httptools"])
        parts = []
        for name in ("uvloop", "httptools"):
            state = "in use" if loaded.get(name) else "NOT loaded"
            parts.append(f"{name} {version_of(name)} ({state})")
        return ", ".join(parts)

    # scenarios

    async def run_direct(self, label: str, vendor_url: str) -> None:
        # No status counting here: at tens of thousands of req/s wrk's Lua would be the limit.
        script = self.script(label, VENDOR_BODY, VENDOR_HEADERS, count_statuses=False)
        await self.measure(label, label, f"{vendor_url}/v1/chat/completions", script)

    async def run_passthrough(self) -> None:
        script = self.script("passthrough", VENDOR_BODY, VENDOR_HEADERS)
        for client in self.options.passthrough_clients:
            label = f"passthrough[{client}]"
            if not passthrough.client_available(client):
                self.report.notes.append(
                    f"{label}: unavailable ({client} is not importable in .venv)")
                progress(f"{label}: unavailable, {client} is not importable")
                continue
            child = await start_child(
                label, [PYTHON, "-m", "bench.passthrough", "--vendor", self.fast_vendor,
                        "--client", client, "--port", "0"],
                self.work / f"passthrough-{client}.log", cwd=REPO)
            self.children.append(child)
            try:
                found = await child.wait_for_line(r"listening on (http://127\.0\.0\.1:\d+)", 30)
                await wait_http(f"{found.group(1)}/health", 30, child)
                progress(f"{label} pid {child.pid} at {found.group(1)}")
                self.report.passthrough_labels.append(label)
                await self.measure(label, "passthrough", f"{found.group(1)}/proxy", script,
                                   target=child.pid)
            finally:
                await child.stop()

    async def run_service_fast(self) -> None:
        async with self.service("service", self.fast_vendor) as (url, child):
            if self.wants("service"):
                script = self.script("service", CHAT_BODY, self.auth_headers)
                await self.measure("service", "service", f"{url}/llm/chat/openai", script,
                                   target=child.pid)
            if self.wants("rss") and self.options.rss_seconds > 0:
                await self.run_steady_rss(url, child)
            if self.wants("stream-ttfd"):
                await self.run_stream(url, child.pid)

    async def run_steady_rss(self, url: str, child: Child) -> None:
        seconds = self.options.rss_seconds
        script = self.script("rss", CHAT_BODY, self.auth_headers)
        progress(f"rss: {seconds:g} s steady run at 16 connections, RSS every 10 s")
        marks: list[tuple[float, int]] = []
        started = time.monotonic()
        load = asyncio.create_task(self.wrk(f"{url}/llm/chat/openai", script, 16, seconds))
        mark = 0.0
        while mark < seconds:
            await asyncio.sleep(max(0.0, started + mark - time.monotonic()))
            memory = read_memory_kb(child.pid)
            if memory:
                marks.append((mark, memory[0]))
            mark += 10.0
        result = await load
        memory = read_memory_kb(child.pid)
        if memory:
            marks.append((seconds, memory[0]))
        self.report.steady = SteadyRss(seconds, marks, result.rps, result.errors)
        progress("rss: " + ", ".join(f"{s:.0f} s {kb / 1024:.1f} MiB" for s, kb in marks))

    async def run_stream(self, url: str, service_pid: int) -> None:
        route = f"{url}/llm/chat/openai/stream"
        status = await stream.probe(route, CHAT_BODY, self.auth_headers)
        if status in (404, 405):
            self.report.notes.append(
                f"stream-ttfd skipped: POST /llm/chat/openai/stream answers {status} "
                "(the streaming route does not exist yet)")
            progress(f"stream-ttfd skipped (route answers {status})")
            return
        options = self.options
        counts = [count for count in options.connections if count <= 16] or [1]
        for count in counts:
            progress(f"stream-ttfd at {count} streams: {options.warmup:g} s warm-up")
            await stream.measure(route, CHAT_BODY, self.auth_headers, count, options.warmup)
            runs = []
            for index in range(options.repeat):
                cpu_start = cpu_seconds(service_pid)
                run = await stream.measure(route, CHAT_BODY, self.auth_headers, count,
                                           options.duration)
                run.service_cpu_s = cpu_seconds(service_pid) - cpu_start
                runs.append(run)
                progress(f"stream-ttfd at {count} streams, run {index + 1}/{options.repeat}: "
                         f"{run.rate:,.1f} streams/s, TTFD p50 "
                         f"{statistics.median(run.ttfd_ms) if run.ttfd_ms else 0:.2f} ms, "
                         f"errors {run.errors}")
            self.report.stream_rows.append(StreamRow(count, runs))
        self.report.notes.append(
            f"stream-ttfd: the fake vendor pauses {options.stream_gap_ms:g} ms between events, "
            "so TTFD includes one pause at most before the first content delta")

    async def run_service_slow(self) -> None:
        async with self.service("service-200ms", self.slow_vendor) as (url, child):
            script = self.script("service-200ms", CHAT_BODY, self.auth_headers)
            await self.measure("service-200ms", "service-200ms", f"{url}/llm/chat/openai",
                               script, target=child.pid)

    # the whole run

    def service_env_text(self) -> str:
        extra = {**SERVICE_LIMITS_ENV, **self.options.service_env}
        return "one bench user, so: " + " ".join(f"{k}={v}" for k, v in extra.items())

    def header(self, revision: str, started: dt.datetime) -> list[str]:
        options = self.options
        clients = []
        for client in options.passthrough_clients:
            available = passthrough.client_available(client)
            clients.append(f"{client} {version_of(client)}" if available
                           else f"{client} unavailable (not importable in .venv)")
        reference = ("the fastest measured client at each connection count"
                     if len(self.report.passthrough_labels) > 1 else
                     (self.report.passthrough_labels or ["none measured"])[0])
        return [
            f"- command: `{options.command}` · {started:%Y-%m-%d %H:%M} UTC · commit {revision}",
            f"- machine: {cpu_model()}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}, PostgreSQL {self.postgres_version or 'n/a'}, "
            f"{wrk_version()}",
            f"- service: one uvicorn worker, {self.service_facts or 'not started'}; "
            f"LOG_LEVEL=WARNING; {self.service_env_text()}",
            f"- passthrough: FastAPI {version_of('fastapi')} on uvicorn {version_of('uvicorn')} "
            f"(uvloop, httptools), clients: {', '.join(clients)}; reference: {reference}",
            f"- fake vendor: bench/fake_vendor.py (asyncio.Protocol on uvloop); slow one "
            f"--delay-ms {options.delay_ms:g}; streams --stream-gap-ms {options.stream_gap_ms:g}",
            f"- load: wrk, -t1 at 1 connection else -t2; {options.duration:g} s x "
            f"{options.repeat} runs, medians (spread = (max - min) / median req/s); "
            f"{options.warmup:g} s warm-up per scenario and connection count",
        ]

    def note_machine_load(self) -> None:
        load = machine_load()
        if load is not None and load > IDLE_LOAD:
            self.report.notes.append(
                f"the machine was not idle at the start (load average {load:.2f} over 1 min): "
                "other processes compete for the cores, so the figures are noisier and lower")

    def snapshot(self) -> str:
        """With --ref: extract that revision for the service; the revision to report."""
        ref = self.options.ref
        if ref is None:
            return git_revision()
        revision = _git("rev-parse", "--short", "--verify", f"{ref}^{{commit}}")
        if not revision:
            raise RuntimeError(f"--ref {ref}: not a commit in this repository")
        archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=REPO,
                                 capture_output=True, timeout=60, check=True).stdout
        destination = self.work / "service-src"
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(destination, filter="data")
        self.service_src = destination
        progress(f"service code: git archive {revision} in {destination}")
        return f"{revision} (service from git archive, working tree not used)"

    def note_tree_changes(self) -> None:
        """The commit is read at the start; say so when the code changed during the run."""
        fingerprints = {fingerprint for _, _, fingerprint in self.revisions}
        if self.service_src is None and len(fingerprints) > 1:
            moments = ", ".join(f"{moment}: {revision} ({fingerprint[:7]})"
                                for moment, revision, fingerprint in self.revisions)
            self.report.notes.append(
                f"the working tree changed during the run ({moments}): each service instance "
                "ran the code as it was when it started")

    async def run(self) -> Report:
        options = self.options
        started = dt.datetime.now(dt.UTC)
        revision = self.snapshot()
        self.revisions.append(("start", revision, tree_fingerprint()))
        self.note_machine_load()
        needs_service = self.wants("service", "service-200ms", "stream-ttfd", "rss")
        if self.wants("direct", "passthrough") or needs_service:
            self.fast_vendor = await self.start_fake("fake-vendor", 0)
        if self.wants("service-200ms", "direct-200ms"):
            self.slow_vendor = await self.start_fake("fake-vendor-200ms", options.delay_ms)
        if needs_service:
            await self.create_database()
        if self.wants("direct"):
            await self.run_direct("direct", self.fast_vendor)
        if self.wants("passthrough"):
            await self.run_passthrough()
        if self.wants("service", "rss", "stream-ttfd"):
            await self.run_service_fast()
        if self.wants("service-200ms"):
            await self.run_service_slow()
        if self.wants("direct-200ms"):
            await self.run_direct("direct-200ms", self.slow_vendor)
        await self.drop_database()
        self.revisions.append(("end", git_revision(), tree_fingerprint()))
        self.note_tree_changes()
        self.report.header = self.header(revision, started)
        self.report.heading = f"{started:%Y-%m-%d %H:%M} UTC · commit {revision}"
        return self.report

    async def run_profile(self) -> int:
        py_spy = profile.py_spy_path()
        if py_spy is None:
            print(f"bench/run --profile: {profile.PY_SPY_HINT}", file=sys.stderr)
            return 2
        progress(f"profiling commit {self.snapshot()}")
        options = self.options
        self.fast_vendor = await self.start_fake("fake-vendor", 0)
        await self.create_database()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        OUT.mkdir(parents=True, exist_ok=True)
        svg, raw = OUT / f"profile-{stamp}.svg", OUT / f"profile-{stamp}.txt"
        async with self.service("service", self.fast_vendor) as (url, child):
            script = self.script("service", CHAT_BODY, self.auth_headers)
            target = f"{url}/llm/chat/openai"
            progress(f"profile: {options.warmup:g} s warm-up at 16 connections")
            await run_wrk(target, script, 16, options.warmup)
            samplers = [
                await start_child("py-spy-svg", profile.record_argv(
                    py_spy, child.pid, options.duration, svg, "flamegraph"),
                    self.work / "py-spy-svg.log"),
                await start_child("py-spy-raw", profile.record_argv(
                    py_spy, child.pid, options.duration, raw, "raw"),
                    self.work / "py-spy-raw.log"),
            ]
            for sampler in samplers:
                self.stack.push_async_callback(sampler.stop)
            progress(f"profile: service pid {child.pid} under py-spy for {options.duration:g} s")
            result = await run_wrk(target, script, 16, options.duration)
            for sampler in samplers:
                try:
                    await asyncio.wait_for(sampler.process.wait(), timeout=30)
                except TimeoutError:
                    await sampler.stop()
                if sampler.process.returncode:
                    progress(f"{sampler.name} exited {sampler.process.returncode}: "
                             f"{sampler.log_tail(5)}")
        await self.drop_database()
        print(f"service at 16 connections under py-spy (sampling slows it; not a result): "
              f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms, "
              f"errors {result.errors}")
        if raw.exists():
            print("\n".join(profile.summarize(raw)))
        print(f"flame graph: {svg.relative_to(REPO) if svg.exists() else 'not written'}; "
              f"collapsed stacks: {raw.relative_to(REPO) if raw.exists() else 'not written'}")
        return 0


def _check_loopback(url: str) -> str | None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        return f"--admin-db-url must point at 127.0.0.1 (got host {host!r})"
    return None


async def main_async(options: Options) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="llm-bench-") as work_dir:
        async with contextlib.AsyncExitStack() as stack:
            bench = Bench(options, stack, Path(work_dir))
            started = time.monotonic()
            try:
                if options.profile:
                    return await bench.run_profile()
                report = await bench.run()
            except RuntimeError as exc:
                progress(f"failed: {exc}")
                if bench.report.rows:
                    bench.report.notes.append("partial: the run failed, nothing was recorded")
                    print(bench.report.text())
                return 1
            text = report.text()
            print(text)
            if options.record:
                append_results(RESULTS, report.heading, text)
                progress(f"appended to {RESULTS.relative_to(REPO)}")
            progress(f"done in {time.monotonic() - started:.0f} s")
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    if wrk_path() is None:
        print(f"bench/run: {WRK_HINT}", file=sys.stderr)
        return 2
    problem = _check_loopback(options.admin_db_url)
    if problem:
        print(f"bench/run: {problem}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(main_async(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; everything started was stopped and the database dropped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
