"""Apps built per test with their own limits (the shared app in tests/conftest.py has none)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import coredis
import httpx2
import pytest

from llm_service.app import create_app
from tests.conftest import (
    TEST_UPSTREAM_TIMEOUT_S,
    Api,
    make_settings,
    require_server,
    vendor_settings,
)
from tests.fakes.vendor import FakeVendor

REDIS_TEST_URL = os.environ.get("LLM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

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


@pytest.fixture
async def redis_url() -> str:
    """A Redis database of the tests' own (db 15 unless LLM_TEST_REDIS_URL), emptied first.
    Skipped on a laptop without Redis; a failure with CI=true."""
    try:
        client = coredis.Redis.from_url(REDIS_TEST_URL, connect_timeout=2)
        await client.flushdb()
    except Exception as exc:
        require_server(f"Redis at {REDIS_TEST_URL}", exc)
    return REDIS_TEST_URL
