"""A vendor that cannot be reached: 502 `provider_error` after the retries, nothing stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from llm_service.app import create_app
from llm_service.providers.registry import provider_ids
from tests.conftest import Api, make_settings

PROVIDERS = provider_ids()


@pytest.fixture
async def unreachable(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    # Nothing listens on port 1 of 127.0.0.1: every connection is refused at once.
    dead = {f"LLM_{p.upper()}_BASE_URL": "http://127.0.0.1:1/v1" for p in provider_ids()}
    settings = make_settings(tmp_path, database_url, LLM_UPSTREAM_TIMEOUT_S=5, **dead)
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield Api(app=app, client=client, settings=settings, backend="")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_unreachable_vendor_is_502_provider_error(
    unreachable: Api, provider: str
) -> None:
    user = 900 + PROVIDERS.index(provider)
    headers = unreachable.auth(user)
    await unreachable.client.post(
        f"/llm/config/{provider}", json={"apiKey": "sk-unreachable-key-1"}, headers=headers
    )
    response = await unreachable.client.post(
        f"/llm/chat/{provider}", json={"message": "anyone there?"}, headers=headers
    )
    assert response.status_code == 502, response.text
    assert response.json()["code"] == "provider_error"
    history = await unreachable.client.get(f"/llm/history/{provider}", headers=headers)
    assert history.json()["total"] == 0
    await unreachable.client.delete(f"/llm/config/{provider}", headers=headers)
