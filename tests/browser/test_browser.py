"""The service in a real browser: Debian's Chromium, headless, driven by Playwright.

A real `llm-service serve` (uvicorn, SQLite, development mode) runs in a subprocess with its
vendors pointed at the fake vendor and `CORS_ORIGINS` listing one page origin. Pages are served
from two other 127.0.0.1 origins (other ports): the listed one saves a configuration and reads a
streamed chat with `fetch` and a bearer token, as the platform's chat widget does; the unlisted
one is refused by the browser itself. And /docs renders its operations with no CDN reachable.

Chromium is the system one (/usr/bin/chromium, `apt-get install chromium`; `.ci/run` installs it
on CI); Playwright never downloads a browser here. Without Chromium the tests are skipped on a
laptop and fail on CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from llm_service.catalog import Catalog
from llm_service.security.jwt import issue_token
from llm_service.settings import load_settings
from tests.conftest import ON_CI, TEST_ENCRYPTION_KEY, TEST_JWT_SECRET
from tests.fakes.vendor import FakeVendor

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LLM_TEST_CHROMIUM", "/usr/bin/chromium")
# As the machine's own browser checks run it: no sandbox as root, and no background traffic
# to the (unreachable) outside world.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the service, the fake vendor and the page origins ---------------------------------------


class Service:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeVendor]:
    with FakeVendor(port=0) as fake:
        yield fake


@pytest.fixture(scope="module")
def page_origins() -> Iterator[dict[str, str]]:
    """Two page servers on 127.0.0.1 (two origins): `listed` is in CORS_ORIGINS, `unlisted` not."""
    servers = {}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>widget</title><p>chat widget test page</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    for name in ("listed", "unlisted"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    yield {name: f"http://127.0.0.1:{s.server_address[1]}" for name, s in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def service(
    fake: FakeVendor, page_origins: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    port = free_port()
    data = tmp_path_factory.mktemp("browser-service")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DB_", "REDIS_"))}
    env.pop("DATABASE_URL", None)
    env.update(fake.env())
    env.update(
        LLM_ENV="development",
        LLM_DATA_DIR=str(data),
        LLM_SERVICE_HOST="127.0.0.1",
        LLM_SERVICE_PORT=str(port),
        JWT_SECRET=TEST_JWT_SECRET,
        ENCRYPTION_KEY=TEST_ENCRYPTION_KEY,
        CORS_ORIGINS=page_origins["listed"],
    )
    log = data / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llm_service.cli", "serve"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx2.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx2.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llm-service serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    try:
        yield Service(url, proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def token() -> str:
    settings = load_settings(
        LLM_ENV="development", JWT_SECRET=TEST_JWT_SECRET, ENCRYPTION_KEY=TEST_ENCRYPTION_KEY
    )
    return issue_token(settings, user_id=41, role="CLIENT", ttl_s=3600)


# ---- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) or shutil.which(
        CHROMIUM
    ) is None:
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if ON_CI:
            pytest.fail(message + "; CI=true needs it", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # A new temporary profile (empty user data dir) per launch.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


# What the chat widget does: save a configuration, then read a streamed chat as it arrives.
WIDGET_JS = """
async ([api, token]) => {
  const headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"};
  const saved = await fetch(api + "/llm/config/claude", {
    method: "POST", headers, body: JSON.stringify({apiKey: "sk-ant-browser-test-1"}),
  });
  const savedBody = await saved.json();
  const response = await fetch(api + "/llm/chat/claude/stream", {
    method: "POST", headers, body: JSON.stringify({message: "Hello from the browser"}),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "", reads = 0;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    reads += 1;
    text += decoder.decode(value, {stream: true});
  }
  return {
    savedStatus: saved.status, savedBody,
    status: response.status, contentType: response.headers.get("content-type"),
    requestId: response.headers.get("x-request-id"), text, reads,
  };
}
"""

REFUSED_JS = """
async ([api, token]) => {
  try {
    const r = await fetch(api + "/llm/configs", {headers: {"Authorization": "Bearer " + token}});
    return {refused: false, status: r.status};
  } catch (error) {
    return {refused: true, name: error.name};
  }
}
"""


def sse_events(text: str) -> list[tuple[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], fields.get("data", "")))
    return events


def test_docs_renders_the_operations_from_the_service_alone(page: Any, service: Service) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{service.url}/docs")
    page.wait_for_selector(".opblock-summary-path", state="attached")
    paths = set(page.locator(".opblock-summary-path").all_inner_texts())
    assert {"/llm/configs", "/llm/chat/{provider}/stream", "/health/ready"} <= {
        p.replace("\u200b", "") for p in paths
    }
    assert [url for url in requested if not url.startswith(service.url + "/")] == []


def test_listed_origin_saves_a_configuration_and_reads_a_streamed_chat(
    page: Any, service: Service, page_origins: dict[str, str], token: str
) -> None:
    page.goto(page_origins["listed"] + "/widget.html")
    result = page.evaluate(WIDGET_JS, [service.url, token])
    events = sse_events(result["text"])
    names = [name for name, _ in events]
    assert (result["savedStatus"], result["savedBody"]) == (
        200, {"success": True, "message": "Configuration saved"})
    assert (result["status"], result["contentType"].split(";")[0], bool(result["requestId"])) == (
        200, "text/event-stream", True)
    assert (names.count("delta") > 1, names[-1]) == (True, "done")
    model = Catalog.load().default_model("claude")  # the fake echoes the configured model
    assert f'"response":"Echo from claude {model}: Hello from the browser"' in events[-1][1]


def test_unlisted_origin_is_refused_by_the_browser(
    page: Any, service: Service, page_origins: dict[str, str], token: str
) -> None:
    page.goto(page_origins["unlisted"] + "/widget.html")
    # Chromium's own console line says why: the answer lacked Access-Control-Allow-Origin.
    with page.expect_console_message(lambda m: "blocked by CORS policy" in m.text) as blocked:
        result = page.evaluate(REFUSED_JS, [service.url, token])
    assert (result, page_origins["unlisted"] in blocked.value.text) == (
        {"refused": True, "name": "TypeError"}, True)


def test_the_service_answers_the_listed_origin_only(
    service: Service, page_origins: dict[str, str]
) -> None:
    # What the browser saw, from the server's side: the listed origin is echoed, the other not.
    def allowed(origin: str) -> str | None:
        response = httpx2.options(
            f"{service.url}/llm/configs",
            headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "authorization"},
        )
        return response.headers.get("access-control-allow-origin")

    assert (allowed(page_origins["listed"]), allowed(page_origins["unlisted"])) == (
        page_origins["listed"], None)
