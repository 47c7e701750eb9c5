"""`bin/dev --fake-vendors`: a first run that chats with no vendor key and no network.

Starts the real script in a subprocess on free ports, runs the curl lines it prints exactly as a
newcomer would paste them, and stops it by pid (the fake vendor must go with it).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_service.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
# bin/dev saves a key without a model: the fake echoes the catalogue's default.
OPENAI_DEFAULT = Catalog.load().default_model("openai")
STARTUP_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DevRun:
    """bin/dev in its own process group; its output is collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(ROOT / "bin" / "dev"), "--fake-vendors"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, marker: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if marker in line:
                return
        pytest.fail(f"bin/dev never printed {marker!r}:\n" + "\n".join(self.lines[-40:]))

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this test made, by its pid
            self.proc.wait()
            raise


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRun]:
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to run the printed lines", pytrace=False)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LLM_", "DB_", "DATABASE_URL", "JWT_", "ENCRYPTION_", "REDIS_"))
    }
    env.update(
        LLM_DATA_DIR=str(tmp_path_factory.mktemp("dev-data")),
        LLM_SERVICE_PORT=str(free_port()),
        FAKE_VENDOR_PORT="0",
    )
    run = DevRun(env)
    try:
        run.wait_for("Application startup complete")
        yield run
    finally:
        run.stop()


def printed_token(dev: DevRun) -> str:
    (line,) = [line for line in dev.lines if "export TOKEN=" in line][:1]
    return line.split("export TOKEN=", 1)[1].split()[0]


def printed_curl(dev: DevRun, route_suffix: str) -> str:
    lines = [line.strip() for line in dev.lines if line.strip().startswith("curl ")]
    (line,) = [line for line in lines if line.endswith(route_suffix)]
    return line


def run_printed(dev: DevRun, line: str) -> str:
    result = subprocess.run(
        ["bash", "-c", line],
        env={**os.environ, "TOKEN": printed_token(dev)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


def sse_events(body: str) -> list[tuple[str, dict]]:
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_every_vendor_base_url_points_at_the_local_fake(dev: DevRun) -> None:
    line = next(line for line in dev.lines if line.startswith("Fake vendors:"))
    assert "every LLM_<VENDOR>_BASE_URL points at http://127.0.0.1:" in line


def test_printed_save_line_saves_a_fake_key(dev: DevRun) -> None:
    out = run_printed(dev, printed_curl(dev, "/llm/config/openai"))
    assert json.loads(out) == {"success": True, "message": "Configuration saved"}


def test_printed_chat_line_gets_the_fake_vendors_answer(dev: DevRun) -> None:
    run_printed(dev, printed_curl(dev, "/llm/config/openai"))
    out = json.loads(run_printed(dev, printed_curl(dev, "/llm/chat/openai")))
    assert out["response"] == f"Echo from openai {OPENAI_DEFAULT}: Hello"


def test_printed_stream_line_streams_deltas_then_done(dev: DevRun) -> None:
    run_printed(dev, printed_curl(dev, "/llm/config/openai"))
    events = sse_events(run_printed(dev, printed_curl(dev, "/llm/chat/openai/stream")))
    names = [name for name, _ in events]
    deltas = "".join(data["text"] for name, data in events if name == "delta")
    assert (names[-1], names.count("delta") > 1, deltas, events[-1][1]["response"]) == (
        "done",
        True,
        f"Echo from openai {OPENAI_DEFAULT}: Hello again",
        f"Echo from openai {OPENAI_DEFAULT}: Hello again",
    )


def test_sigterm_to_bin_dev_stops_the_service_and_the_fake(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DB_"))}
    env.update(
        LLM_DATA_DIR=str(tmp_path_factory.mktemp("dev-stop")),
        LLM_SERVICE_PORT=str(port),
        FAKE_VENDOR_PORT="0",
    )
    run = DevRun(env)
    try:
        run.wait_for("Application startup complete")
        fake_url = next(line for line in run.lines if line.startswith("Fake vendors:"))
        fake_port = int(fake_url.rsplit(":", 1)[1].split()[0])
    finally:
        code = run.stop()
    still_listening = []
    for p in (port, fake_port):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", p)) == 0:
                still_listening.append(p)
    assert (code, still_listening) == (143, [])
