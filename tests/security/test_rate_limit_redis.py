"""Rate limits in Redis mode: every user has a counter of their own on the real Redis (shared by
replicas), and a Redis that accepts connections but never answers does not hang a request: the
limiter gives up within its timeout and fails over to counting in the process, with one warning
per outage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import coredis
import pytest
from limits import parse

from llm_service.security.rate_limit import RateLimiter
from tests.conftest import make_settings

# A hang would show as this test failing here, never as a stuck run.
GUARD_S = 15


def limiter(tmp_path: Path, redis_url: str | None, limit: str = "3/minute") -> RateLimiter:
    return RateLimiter(make_settings(tmp_path, "sqlite+aiosqlite://", REDIS_URL=redis_url,
                                     RATE_LIMIT_DEFAULT=limit, RATE_LIMIT_CHAT=limit))


@pytest.mark.redis
async def test_each_user_has_a_counter_of_their_own_in_redis(
    tmp_path: Path, redis_url: str
) -> None:
    one, replica = limiter(tmp_path, redis_url), limiter(tmp_path, redis_url)
    assert one.uses_redis
    item = one.default
    first = [await one.hit(item, 1) for _ in range(3)]
    other_user = await replica.hit(item, 2)
    over = await replica.hit(item, 1)  # the other replica sees user 1's three requests
    assert [(s.allowed, s.remaining, s.limit) for s in first] == [
        (True, 2, 3), (True, 1, 3), (True, 0, 3)]
    assert (other_user.allowed, other_user.remaining) == (True, 2)
    assert (over.allowed, over.remaining) == (False, 0)
    assert 1 <= over.reset_after_s <= 60
    client = coredis.Redis.from_url(redis_url)
    keys = sorted([k.decode() if isinstance(k, bytes) else k async for k in client.scan_iter()])
    assert len(keys) == 2, keys  # one counter per user, nothing shared
    assert keys[0] != keys[1]


@pytest.mark.redis
async def test_a_url_already_naming_the_async_driver_is_used_as_is(
    tmp_path: Path, redis_url: str
) -> None:
    explicit = limiter(tmp_path, "async+" + redis_url, limit="1/minute")
    plain = limiter(tmp_path, redis_url, limit="1/minute")
    assert (await explicit.hit(explicit.default, 3)).allowed
    assert not (await plain.hit(plain.default, 3)).allowed  # the same counter in Redis


@pytest.fixture
async def silent_redis() -> AsyncIterator[tuple[str, list[int]]]:
    """A server on 127.0.0.1 that accepts connections, reads, and never answers a byte."""
    accepted: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted) + 1)
        writers.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0", accepted
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_redis_that_never_answers_does_not_hang_requests(
    tmp_path: Path, silent_redis: tuple[str, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    url, accepted = silent_redis
    stuck = limiter(tmp_path, url, limit="2/minute")
    with caplog.at_level(logging.WARNING, logger="llm_service.rate_limit"):
        states = [await asyncio.wait_for(stuck.hit(stuck.default, 1), GUARD_S)
                  for _ in range(4)]
        other = await asyncio.wait_for(stuck.hit(stuck.default, 2), GUARD_S)
    assert accepted  # the limiter did reach the silent server: not a refused port
    assert [s.allowed for s in states] == [True, True, False, False]
    assert [s.remaining for s in states] == [1, 0, 0, 0]
    assert other.allowed and other.remaining == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "llm_service.rate_limit"]
    assert len(warnings) == 1, warnings  # one outage, one warning
    assert warnings[0] == ("rate-limit storage unreachable (StorageError); counting in this "
                           "process for 5s")  # the storage's own error, wrapped by `limits`


async def test_a_redis_whose_connections_never_complete_does_not_hang_requests(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A listening socket that never accepts: once its backlog is full, the kernel drops further
    # SYNs, so a connection attempt neither succeeds nor fails (a black-holed address, on
    # 127.0.0.1). Only the connect timeout ends it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(listener.getsockname())
        fillers.append(filler)
    try:
        port = listener.getsockname()[1]
        stuck = limiter(tmp_path, f"redis://127.0.0.1:{port}/0", limit="1/minute")
        with caplog.at_level(logging.WARNING, logger="llm_service.rate_limit"):
            first = await asyncio.wait_for(stuck.hit(stuck.default, 1), GUARD_S)
            second = await asyncio.wait_for(stuck.hit(stuck.default, 1), GUARD_S)
    finally:
        for sock in (*fillers, listener):
            sock.close()
    assert (first.allowed, second.allowed) == (True, False)
    assert [r.getMessage() for r in caplog.records if r.name == "llm_service.rate_limit"] == [
        "rate-limit storage unreachable (StorageError); counting in this process for 5s"]


async def test_after_the_pause_redis_is_tried_again(
    tmp_path: Path, silent_redis: tuple[str, list[int]], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With no pause between tries, every request tries the silent Redis again (and warns).
    monkeypatch.setattr("llm_service.security.rate_limit.REDIS_RETRY_AFTER_S", 0.0)
    url, _ = silent_redis
    stuck = limiter(tmp_path, url, limit="5/minute")
    with caplog.at_level(logging.WARNING, logger="llm_service.rate_limit"):
        for _ in range(2):
            assert (await asyncio.wait_for(stuck.hit(stuck.default, 1), GUARD_S)).allowed
    assert len([r for r in caplog.records if r.name == "llm_service.rate_limit"]) == 2


def test_items_come_from_the_settings(tmp_path: Path) -> None:
    limits = RateLimiter(make_settings(tmp_path, "sqlite+aiosqlite://",
                                       RATE_LIMIT_CHAT="7/minute", RATE_LIMIT_DEFAULT="9/hour"))
    assert (limits.chat, limits.default) == (parse("7/minute"), parse("9/hour"))
    assert not limits.uses_redis
