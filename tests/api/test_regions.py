"""Regions (issue 12 item 6): a configuration may carry a region from the catalogue's list for
its vendor, the endpoint follows it, never a free address; the strict fake refuses a DashScope
key on another region's endpoint (401, as DashScope does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm_service.providers.base import FailureKind, ProviderError
from llm_service.providers.registry import ProviderRegistry, make_http_client
from tests.conftest import Api, make_settings
from tests.fakes.vendor import FakeVendor


async def save(api: Api, provider: str, body: dict[str, Any]) -> Any:
    return await api.client.post(f"/llm/config/{provider}", json=body, headers=api.auth(1))


async def chat(api: Api, provider: str, stream: bool = False) -> Any:
    path = f"/llm/chat/{provider}/stream" if stream else f"/llm/chat/{provider}"
    return await api.client.post(path, json={"message": "hi", "history": []},
                                 headers=api.auth(1))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_the_endpoint_follows_the_region(
    api: Api, fake_vendor: FakeVendor, stream: bool
) -> None:
    saved = await save(api, "qwen", {"apiKey": "sk-beijing-0123456789", "region": "beijing"})
    assert saved.status_code == 200, saved.text
    response = await chat(api, "qwen", stream)
    assert response.status_code == 200, response.text
    (record,) = fake_vendor.requests_for("qwen")
    assert record.path.startswith("/qwen/beijing/api/v1/")
    view = (await api.client.get("/llm/configs", headers=api.auth(1))).json()["configs"]["qwen"]
    assert view["region"] == "beijing"


async def test_a_key_on_another_regions_endpoint_is_rejected(
    api: Api, fake_vendor: FakeVendor
) -> None:
    await save(api, "qwen", {"apiKey": "sk-beijing-0123456789"})  # no region: Singapore
    response = await chat(api, "qwen")
    assert response.status_code == 400
    assert response.json()["code"] == "provider_auth_failed"
    assert fake_vendor.requests_for("qwen")[-1].status == 401


@pytest.mark.parametrize(("provider", "region"), [("qwen", "mars"), ("openai", "beijing"),
                                                  ("qwen", "https://evil.example")])
async def test_a_region_the_catalogue_does_not_list_is_refused(
    api: Api, provider: str, region: str
) -> None:
    response = await save(api, provider, {"apiKey": "sk-region-0123456789", "region": region})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["details"][0]["field"] == "region"


async def test_without_an_operator_url_the_region_is_the_catalogues_origin(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///:memory:")
    http = make_http_client(settings)
    try:
        registry = ProviderRegistry(settings, http)
        assert registry.credentials("qwen", "k", "virginia").base_url == \
            "https://dashscope-us.aliyuncs.com"
        assert registry.credentials("qwen", "k").base_url == "https://dashscope-intl.aliyuncs.com"
        with pytest.raises(ProviderError) as caught:
            registry.credentials("qwen", "k", "mars")
        assert caught.value.kind is FailureKind.BAD_REQUEST
    finally:
        await http.aclose()
