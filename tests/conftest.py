"""Shared fixtures: every API test runs twice, on the embedded SQLite and on a real PostgreSQL.

PostgreSQL: a fresh database is created for the run on `LLM_TEST_PG_URL` (default
postgresql://postgres@127.0.0.1:5432/test) and dropped afterwards. When the server is missing the
PostgreSQL half is skipped on a laptop, and fails with `CI=true`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import delete

from llm_service.app import create_app
from llm_service.db.models import (
    BudgetReservation,
    BudgetUsage,
    ChatMessage,
    Conversation,
    LLMConfig,
)
from llm_service.providers.registry import provider_ids
from llm_service.runtime import Runtime
from llm_service.security.crypto import generate_key_hex
from llm_service.security.jwt import issue_token
from llm_service.settings import Settings, load_settings
from tests.fakes.vendor import FakeVendor

PG_ADMIN_URL = os.environ.get("LLM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ON_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ("sqlite", "postgres")

TEST_JWT_SECRET = "test-secret-" + "x" * 60
TEST_ENCRYPTION_KEY = generate_key_hex()


def require_server(what: str, error: BaseException) -> None:
    """Skip on a laptop without the server; on CI a missing server is a failure."""
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if ON_CI:
        pytest.fail(f"{message}; CI=true needs it", pytrace=False)
    pytest.skip(message)


async def create_pg_database(prefix: str = "llm_test") -> str:
    """A fresh PostgreSQL database; returns its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require_server("PostgreSQL at " + PG_ADMIN_URL, exc)
        raise
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"


async def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def fresh_database_url(backend: str, tmp_dir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_dir / f'{uuid.uuid4().hex[:8]}.db'}"
    return await create_pg_database()


def make_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "LLM_ENV": "development",
        "LLM_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "LLM_MIGRATE_ON_START": True,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A migrated-on-start database of each backend, shared by the backend's API tests."""
    url = await fresh_database_url(request.param, tmp_path_factory.mktemp(request.param))
    yield url
    if request.param == "postgres":
        await drop_pg_database(url)


@dataclass
class Api:
    """The app under test with a client and helpers to act as a user."""

    app: FastAPI
    client: httpx2.AsyncClient
    settings: Settings
    backend: str

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime  # type: ignore[no-any-return]

    def token(self, user_id: int, role: str = "CLIENT") -> str:
        return issue_token(self.settings, user_id=user_id, role=role, ttl_s=3600)

    def auth(self, user_id: int, role: str = "CLIENT") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, role)}"}


# Vendor calls in the shared app give up after this long (the hang tests wait for it).
TEST_UPSTREAM_TIMEOUT_S = 2.0


@pytest.fixture(scope="session")
def fake_vendor() -> Iterator[FakeVendor]:
    """One fake vendor server on 127.0.0.1 speaking all five wire formats."""
    with FakeVendor() as fake:
        yield fake


def vendor_settings(fake: FakeVendor) -> dict[str, Any]:
    return {f"LLM_{p.upper()}_BASE_URL": fake.base_url(p) for p in provider_ids()}


@pytest.fixture(scope="session")
async def app_under_test(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, fake_vendor: FakeVendor
) -> AsyncIterator[tuple[FastAPI, Settings]]:
    settings = make_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        LLM_UPSTREAM_TIMEOUT_S=TEST_UPSTREAM_TIMEOUT_S,
        # The shared app is not about limits (tests/security has those): keep them out of the way.
        RATE_LIMIT_CHAT="1000000/hour",
        RATE_LIMIT_DEFAULT="1000000/hour",
        LLM_MAX_CONCURRENT_CHATS_PER_USER=100,
        **vendor_settings(fake_vendor),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app, settings


@pytest.fixture
async def api(
    app_under_test: tuple[FastAPI, Settings], database_url: str, fake_vendor: FakeVendor
) -> AsyncIterator[Api]:
    app, settings = app_under_test
    fake_vendor.reset()
    runtime: Runtime = app.state.runtime
    await runtime.background.wait_idle(30)  # a title still being made by an earlier test
    async with runtime.sessions() as session, session.begin():
        await session.execute(delete(ChatMessage))
        await session.execute(delete(Conversation))
        await session.execute(delete(LLMConfig))
        await session.execute(delete(BudgetUsage))
        await session.execute(delete(BudgetReservation))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(
            app=app,
            client=client,
            settings=settings,
            backend="postgres" if database_url.startswith("postgresql") else "sqlite",
        )


AppFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def make_api(
    api: Api, database_url: str, tmp_path: Path, fake_vendor: FakeVendor
) -> AppFactory:
    """`async with make_api(RATE_LIMIT_CHAT="2/minute") as api:` an app of its own, on the
    backend's database (emptied, and the fake vendor reset, by the `api` fixture)."""

    @asynccontextmanager
    async def build(**overrides: Any) -> AsyncIterator[Api]:
        settings = make_settings(
            tmp_path, database_url, LLM_UPSTREAM_TIMEOUT_S=TEST_UPSTREAM_TIMEOUT_S,
            **{**vendor_settings(fake_vendor), **overrides},
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app), httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://test"
        ) as client:
            yield Api(app=app, client=client, settings=settings, backend="")

    return build


def sse_events(body: str) -> list[tuple[str, Any]]:
    """(event, parsed data) of a Server-Sent Events body, in order."""
    events, name = [], None
    for line in body.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            events.append((name, json.loads(line[6:])))
    return events


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Count the tests of each database backend, so a skipped PostgreSQL half is visible."""
    counts: dict[str, dict[str, int]] = {backend: {} for backend in BACKENDS}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            for backend in BACKENDS:
                if f"[{backend}" in nodeid or f"-{backend}]" in nodeid or f"-{backend}-" in nodeid:
                    counts[backend][outcome] = counts[backend].get(outcome, 0) + 1
    lines = [
        f"{backend}: " + (", ".join(f"{n} {o}" for o, n in sorted(c.items())) or "no tests")
        for backend, c in counts.items()
    ]
    terminalreporter.write_sep("-", "database backends: " + "; ".join(lines))
