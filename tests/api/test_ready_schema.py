"""`/health/ready` is ready only when the schema is at the migration head (issue 10, item 6):
a replica must not take traffic on a database that an older (or newer) version migrated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from llm_service.app import create_app
from llm_service.db import migrate
from tests.conftest import BACKENDS, Api, drop_pg_database, fresh_database_url, make_settings


@pytest.fixture(params=BACKENDS)
async def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    url = await fresh_database_url(request.param, tmp_path)
    settings = make_settings(tmp_path, url)
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app), httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://test"
        ) as client:
            yield Api(app=app, client=client, settings=settings, backend=request.param)
    finally:
        if request.param == "postgres":
            await drop_pg_database(url)


async def test_ready_only_at_the_migration_head(own_database: Api) -> None:
    api = own_database
    engine = api.runtime.engine
    assert migrate.head_revision() == "0007"
    assert (await api.client.get("/health/ready")).status_code == 200

    await migrate.downgrade(engine, "0004")
    behind = await api.client.get("/health/ready")
    assert behind.status_code == 503
    assert behind.json()["code"] == "unavailable" and behind.headers["Retry-After"] == "5"

    await migrate.upgrade(engine)
    assert (await api.client.get("/health/ready")).status_code == 200


async def test_not_ready_on_a_database_never_migrated(own_database: Api) -> None:
    api = own_database
    await migrate.downgrade(api.runtime.engine, "base")
    response = await api.client.get("/health/ready")
    assert response.status_code == 503 and response.json()["code"] == "unavailable"
