"""Two service processes on two ports sharing PostgreSQL and Redis hold one chat limit together."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

from llm_service.security.jwt import issue_token
from tests.conftest import (
    TEST_ENCRYPTION_KEY,
    TEST_JWT_SECRET,
    create_pg_database,
    drop_pg_database,
    make_settings,
    vendor_settings,
)
from tests.fakes.vendor import FakeVendor

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STARTUP_BOUND_S = 120

@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    url = await create_pg_database("llm_replicas")
    yield url
    await drop_pg_database(url)


@pytest.fixture
def replicas(
    pg_url: str, redis_url: str, fake_vendor: FakeVendor, tmp_path: Path
) -> Iterator[list[str]]:
    env = {
        **os.environ,
        "LLM_ENV": "development",
        "LLM_DATA_DIR": str(tmp_path),
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "RATE_LIMIT_CHAT": "20/hour",
        "LLM_MAX_CONCURRENT_CHATS_PER_USER": "100",
        "LOG_LEVEL": "WARNING",
        **vendor_settings(fake_vendor),
    }
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", "import sys; from llm_service.cli import main; sys.exit(main())",
             "serve"],
            env={**env, "LLM_SERVICE_PORT": str(port),
                 "LLM_MIGRATE_ON_START": "true" if i == 0 else "false"},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for i, port in enumerate(ports)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        # A bound on start-up, not a timing check: a loaded 2-core machine took over 30 s.
        deadline = time.monotonic() + STARTUP_BOUND_S
        for url, process in zip(urls, processes, strict=True):
            while True:
                if process.poll() is not None:
                    pytest.fail(f"replica exited: {process.stderr.read().decode()[-2000:]}")
                try:
                    if httpx2.get(f"{url}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx2.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"replica did not become ready in {STARTUP_BOUND_S} s")
                time.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


async def test_thirty_chats_across_two_replicas_give_exactly_twenty(
    replicas: list[str], tmp_path: Path, fake_vendor: FakeVendor
) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite://")
    auth = {u: {"Authorization": f"Bearer {issue_token(settings, user_id=u, role='CLIENT')}"}
            for u in (1, 2)}
    async with httpx2.AsyncClient(timeout=30) as client:
        for user in (1, 2):
            saved = await client.post(f"{replicas[user - 1]}/llm/config/openai",
                                      json={"apiKey": f"sk-replica-user-{user}"},
                                      headers=auth[user])
            assert saved.status_code == 200
        fake_vendor.reset()
        results = await asyncio.gather(*[
            client.post(f"{replicas[i % 2]}/llm/chat/openai",
                        json={"message": f"chat {i}", "history": []}, headers=auth[1])
            for i in range(30)
        ])
        other_user = await client.post(f"{replicas[1]}/llm/chat/openai",
                                       json={"message": "mine", "history": []}, headers=auth[2])
        history = await client.get(f"{replicas[0]}/llm/history/openai?limit=200",
                                   headers=auth[1])
    outcomes = Counter(
        (r.status_code, r.json().get("code") if r.status_code != 200 else "ok") for r in results
    )
    assert outcomes == {(200, "ok"): 20, (429, "rate_limited"): 10}
    served_by = Counter(replicas[i % 2] for i, r in enumerate(results) if r.status_code == 200)
    assert len(served_by) == 2  # both replicas served some of the twenty
    assert other_user.status_code == 200
    assert history.json()["total"] == 40
    assert len(fake_vendor.requests_for("openai")) == 21
