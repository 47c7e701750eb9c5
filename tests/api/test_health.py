"""GET /health and /health/ready, and the 503 every route gives while the database is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from llm_service.app import create_app
from llm_service.security.jwt import issue_token
from tests.conftest import Api, make_settings


async def test_health_is_ok_without_auth(api: Api) -> None:
    response = await api.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_is_ok_when_the_database_answers(api: Api) -> None:
    response = await api.client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


DEAD_DATABASES = {
    # Nothing listens on port 1; the SQLite file's directory does not exist.
    "postgres": "postgresql+asyncpg://postgres@127.0.0.1:1/none",
    "sqlite": "sqlite+aiosqlite:////nonexistent-llm-service-dir/x.db",
}


@pytest.fixture(params=list(DEAD_DATABASES))
async def down(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(
        tmp_path, DEAD_DATABASES[request.param], LLM_MIGRATE_ON_START=False, DB_TIMEOUT_S=2
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield Api(app=app, client=client, settings=settings, backend=request.param)


async def test_health_stays_ok_while_the_database_is_down(down: Api) -> None:
    assert (await down.client.get("/health")).status_code == 200


async def test_ready_is_503_while_the_database_is_down(down: Api) -> None:
    response = await down.client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/llm/configs"), ("POST", "/llm/config/openai"), ("DELETE", "/llm/config/openai"),
     ("GET", "/llm/history/openai"), ("DELETE", "/llm/history/openai")],
)
async def test_routes_answer_503_unavailable_while_the_database_is_down(
    down: Api, method: str, path: str
) -> None:
    token = issue_token(down.settings, user_id=1, role="CLIENT")
    response = await down.client.request(
        method, path, json={"apiKey": "sk-canary-0123456789"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "unavailable"
    assert body["error"] == (
        "The service's database is not reachable right now; try again in a few seconds."
    )
    assert response.headers["Retry-After"] == "5"
    assert "canary" not in response.text and "asyncpg" not in response.text
