"""Redis for the rate-limit tests (apps with their own limits come from `make_api`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import coredis
import pytest

from llm_service import logs
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


@pytest.fixture
def service_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything captured at DEBUG, with the service's logging set up as `llm-service` sets it
    (held third-party loggers, the redacting filter on every handler, caplog's included); the
    loggers are put back afterwards."""
    names = ["", *logs.HELD_LOGGERS, *logs.UVICORN_LOGGERS, "alembic.runtime.plugins"]
    levels = {name: logging.getLogger(name).level for name in names}
    caplog.set_level(logging.DEBUG)
    logs.configure_logging("DEBUG")
    yield caplog
    for name, level in levels.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for target in (logger, *logger.handlers):
            for item in [f for f in target.filters if isinstance(f, logs.RedactingFilter)]:
                target.removeFilter(item)
