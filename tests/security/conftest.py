"""Redis for the rate-limit tests (apps with their own limits come from `make_api`)."""

from __future__ import annotations

import os

import coredis
import pytest

from tests.conftest import AppFactory, require_server

__all__ = ["AppFactory"]


REDIS_TEST_URL = os.environ.get("LLM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

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
