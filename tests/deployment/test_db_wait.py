"""Migrating waits for a database that is not up yet (compose on podman < 4.6 starts the service
before the database is healthy), and gives up on errors that waiting cannot cure."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from llm_service.db import migrate
from tests.conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database

pytestmark = pytest.mark.postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LateDatabase(logging.Handler):
    """Forwards 127.0.0.1:<port> to the real PostgreSQL, but only from the first retry warning
    on: until then the port refuses, like a database container that is still starting."""

    def __init__(self, port: int) -> None:
        super().__init__(logging.WARNING)
        self.port = port
        self.warnings = 0
        self.server: asyncio.Server | None = None
        self._started: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._pg_host, self._pg_port = "127.0.0.1", int(
            PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
        )

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings += 1
        if self._started is None:
            self._started = self._loop.create_task(self._listen())

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self._pg_host, self._pg_port)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer),
                             return_exceptions=True)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    url = await create_pg_database("llm_wait")
    yield url
    await drop_pg_database(url)


@pytest.fixture
def warnings_of_migrate() -> AsyncIterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("llm_service.db")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


async def test_upgrade_waits_for_a_database_that_comes_up_later(pg_url: str) -> None:
    port = free_port()
    late = LateDatabase(port)
    logger = logging.getLogger("llm_service.db")
    logger.addHandler(late)
    engine = create_async_engine(pg_url.replace(
        pg_url.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{port}"))
    try:
        await migrate.upgrade(engine, wait_s=60)
        revision = await migrate.current_revision(engine)
    finally:
        logger.removeHandler(late)
        await engine.dispose()
        if late.server is not None:
            late.server.close()
    assert (late.warnings >= 1, revision is not None) == (True, True)


async def test_upgrade_gives_up_after_the_wait(
    warnings_of_migrate: list[logging.LogRecord],
) -> None:
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    try:
        with pytest.raises(OSError):
            await migrate.upgrade(engine, wait_s=0.5)
    finally:
        await engine.dispose()
    assert [r.getMessage().split(";")[0] for r in warnings_of_migrate][:1] == [
        "database not reachable yet (ConnectionRefusedError)"
    ]


async def test_a_missing_database_is_not_waited_for(
    pg_url: str, warnings_of_migrate: list[logging.LogRecord]
) -> None:
    engine = create_async_engine(pg_url.rsplit("/", 1)[0] + "/llm_wait_no_such_database")
    try:
        with pytest.raises(Exception, match="does not exist"):
            await migrate.upgrade(engine, wait_s=60)
    finally:
        await engine.dispose()
    assert warnings_of_migrate == []


async def test_retry_warning_carries_no_connection_details(
    warnings_of_migrate: list[logging.LogRecord],
) -> None:
    engine = create_async_engine(
        f"postgresql+asyncpg://postgres:s3cret-pw@127.0.0.1:{free_port()}/x")
    try:
        with pytest.raises(OSError):
            await migrate.upgrade(engine, wait_s=0.3)
    finally:
        await engine.dispose()
    text = " ".join(r.getMessage() for r in warnings_of_migrate)
    assert ("s3cret" in text, "127.0.0.1" in text, bool(text)) == (False, False, True)
