"""The real `llm-service serve` at LOG_LEVEL=DEBUG (logging set up by the CLI, uvicorn's own
handlers installed after it): chats with all five vendors on both routes, a success and a
rejected key each, leave neither the key nor the chat text in what the process writes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from llm_service.providers.registry import provider_ids
from llm_service.security.jwt import issue_token
from tests.conftest import TEST_ENCRYPTION_KEY, TEST_JWT_SECRET, make_settings, vendor_settings
from tests.fakes.vendor import FakeVendor

PROVIDERS = provider_ids()

KEY = "Wq7ZuT3mXp9LkR2vNc8BdHy4"  # in no known key shape
TEXT = "serve-canary chat text"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(tmp_path: Path, fake_vendor: FakeVendor, output: Path) -> tuple[subprocess.Popen[bytes],
                                                                            str]:
    port = free_port()
    env = {**os.environ, "LLM_ENV": "development", "LLM_DATA_DIR": str(tmp_path),
           "JWT_SECRET": TEST_JWT_SECRET, "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
           "LOG_LEVEL": "DEBUG", "LLM_SERVICE_PORT": str(port), **vendor_settings(fake_vendor)}
    env.pop("DATABASE_URL", None)
    env.pop("DB_HOST", None)
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from llm_service.cli import main; sys.exit(main())",
             "serve"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # imports are slow on a loaded machine
    while True:
        if process.poll() is not None:
            pytest.fail(f"serve exited: {output.read_text()[-2000:]}")
        try:
            if httpx2.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return process, url
        except httpx2.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"serve did not become ready in 120 s: {output.read_text()[-2000:]}")
        time.sleep(0.2)


async def test_serve_at_debug_logs_no_key_and_no_chat_text(
    tmp_path: Path, fake_vendor: FakeVendor
) -> None:
    output = tmp_path / "serve.log"
    process, url = start(tmp_path, fake_vendor, output)
    settings = make_settings(tmp_path, "sqlite+aiosqlite://")
    auth = {"Authorization": f"Bearer {issue_token(settings, user_id=1, role='CLIENT')}"}
    statuses = []
    try:
        async with httpx2.AsyncClient(base_url=url, timeout=30, headers=auth) as client:
            for provider in PROVIDERS:
                saved = await client.post(f"/llm/config/{provider}", json={"apiKey": KEY})
                assert saved.status_code == 200
                for mode in ("ok", "auth"):
                    fake_vendor.set_behaviour(mode, provider=provider)
                    for route in ("", "/stream"):
                        answer = await client.post(f"/llm/chat/{provider}{route}",
                                                   json={"message": TEXT})
                        statuses.append((provider, mode, route, answer.status_code))
    finally:
        fake_vendor.reset()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    written = output.read_text()
    assert [s for s in statuses if s[1] == "ok"] == [(p, "ok", r, 200) for p in PROVIDERS
                                                      for r in ("", "/stream")]
    assert "DEBUG" in written  # the level did apply: our own debug lines are there
    for leak in (KEY, KEY[:12], KEY[-12:], TEXT, "Request options"):
        assert leak not in written, f"{leak!r} in the log: {written[-1500:]}"
    for sql in ("SELECT ", "INSERT INTO", "UPDATE llm_", "sqlalchemy.engine"):
        assert sql not in written, f"SQL ({sql!r}) in the log: {written[-1500:]}"
