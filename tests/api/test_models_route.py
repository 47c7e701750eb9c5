"""GET /llm/models/{provider} (issue 12 item 7): the vendor's list for the user's key, cached per
user, joined with the catalogue; without a saved key, the catalogue's list."""

from __future__ import annotations

from typing import Any

import pytest

from llm_service.providers.registry import provider_ids
from llm_service.services import models as models_service
from tests.conftest import Api
from tests.fakes.vendor import FakeVendor


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    models_service._cache.clear()


async def listing(api: Api, provider: str, user: int = 1) -> Any:
    response = await api.client.get(f"/llm/models/{provider}", headers=api.auth(user))
    assert response.status_code == 200, response.text
    return response.json()


async def test_without_a_key_the_catalogues_list(api: Api, fake_vendor: FakeVendor) -> None:
    body = await listing(api, "openai")
    assert body["source"] == "catalogue"
    assert [m["id"] for m in body["models"]] == [m.id for m in api.runtime.catalog.models("openai")]
    assert fake_vendor.requests_for("openai") == []


@pytest.mark.parametrize("provider", provider_ids())
async def test_with_a_key_the_vendors_list_joined_and_cached(
    api: Api, fake_vendor: FakeVendor, provider: str
) -> None:
    saved = await api.client.post(f"/llm/config/{provider}",
                                  json={"apiKey": f"sk-models-{provider}-0001"},
                                  headers=api.auth(1))
    assert saved.status_code == 200
    first = await listing(api, provider)
    second = await listing(api, provider)
    assert first == second and first["source"] == "vendor"
    catalog = api.runtime.catalog
    expected = [m.id for m in catalog.models(provider) if m.status != "retired"]
    assert [m["id"] for m in first["models"]] == expected
    default = next(m for m in first["models"] if m["id"] == catalog.default_model(provider))
    assert default["listed"] is True and default["status"] == "current"
    assert len(fake_vendor.requests_for(provider)) == 1  # the second answer was cached
    assert (await listing(api, provider, user=2))["source"] == "catalogue"  # per user


async def test_a_rejected_key_falls_back_to_the_catalogue(
    api: Api, fake_vendor: FakeVendor
) -> None:
    await api.client.post("/llm/config/claude", json={"apiKey": "bad-key-0123456789"},
                          headers=api.auth(1))
    assert (await listing(api, "claude"))["source"] == "catalogue"
