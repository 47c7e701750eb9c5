"""POST /llm/config/{provider}/test (issue 12 item 7): the vendor's list-models call, answered as
ok / key_rejected / no_credit / wrong_region, for a saved key or one in the body (never saved),
and a failed check never changes the saved key."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from llm_service.db.models import LLMConfig
from llm_service.providers.registry import provider_ids
from tests.conftest import Api
from tests.fakes.vendor import FakeVendor

PROVIDERS = provider_ids()


async def check(api: Api, provider: str, body: dict[str, Any] | None = None) -> Any:
    return await api.client.post(f"/llm/config/{provider}/test", json=body or {},
                                 headers=api.auth(1))


async def save(api: Api, provider: str, key: str, **fields: Any) -> None:
    response = await api.client.post(f"/llm/config/{provider}", json={"apiKey": key, **fields},
                                     headers=api.auth(1))
    assert response.status_code == 200, response.text


async def rows(api: Api) -> list[tuple[Any, ...]]:
    async with api.runtime.sessions() as session:
        result = await session.execute(select(
            LLMConfig.provider, LLMConfig.api_key_encrypted, LLMConfig.api_key_hint,
            LLMConfig.model, LLMConfig.region, LLMConfig.updated_at))
        return [tuple(row) for row in result]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_saved_key_is_checked_with_the_vendors_model_list(
    api: Api, fake_vendor: FakeVendor, provider: str
) -> None:
    await save(api, provider, f"sk-check-{provider}-0001")
    response = await check(api, provider)
    assert response.status_code == 200, response.text
    body = response.json()
    listed = [m for m in api.runtime.catalog.models(provider) if m.status != "retired"]
    assert (body["result"], body["models"]) == ("ok", len(listed))
    (record,) = fake_vendor.requests_for(provider)
    assert record.method == "GET" and record.path.endswith("/models")


async def test_a_key_in_the_body_is_checked_and_not_saved(
    api: Api, fake_vendor: FakeVendor
) -> None:
    response = await check(api, "claude", {"apiKey": "sk-ant-new-key-0123456789"})
    assert response.json()["result"] == "ok"
    assert fake_vendor.requests_for("claude")[0].headers["x-api-key"] == \
        "sk-ant-new-key-0123456789"
    assert await rows(api) == []


async def test_a_rejected_key_leaves_the_saved_one_alone(
    api: Api, fake_vendor: FakeVendor
) -> None:
    await save(api, "openai", "sk-saved-key-0123456789")
    before = await rows(api)
    body = (await check(api, "openai", {"apiKey": "bad-key-0123456789"})).json()
    assert body["result"] == "key_rejected"
    fake_vendor.set_behaviour("auth", provider="openai")
    assert (await check(api, "openai")).json()["result"] == "key_rejected"
    assert await rows(api) == before


@pytest.mark.parametrize("provider", ["openai", "claude", "qwen", "huggingface"])
async def test_no_credit_is_told_apart(
    api: Api, fake_vendor: FakeVendor, provider: str
) -> None:
    await save(api, provider, f"sk-credit-{provider}-0001")
    fake_vendor.set_behaviour("billing", provider=provider)
    body = (await check(api, provider)).json()
    assert body["result"] == "no_credit"
    assert "add credit" in body["message"]


async def test_a_key_of_another_region_is_named(api: Api, fake_vendor: FakeVendor) -> None:
    await save(api, "qwen", "sk-virginia-0123456789")  # saved without a region: Singapore
    body = (await check(api, "qwen")).json()
    assert (body["result"], body["region"]) == ("wrong_region", "virginia")
    regional = await check(api, "qwen", {"region": "virginia"})
    assert regional.json()["result"] == "ok"


async def test_nothing_to_check_is_not_configured(api: Api) -> None:
    response = await check(api, "gemini")
    assert response.status_code == 400
    assert response.json()["code"] == "provider_not_configured"


async def test_an_unknown_region_is_refused(api: Api) -> None:
    response = await check(api, "qwen", {"apiKey": "sk-x-0123456789", "region": "mars"})
    assert response.status_code == 422


async def test_verify_on_save_saves_only_a_key_that_passes(
    api: Api, fake_vendor: FakeVendor
) -> None:
    refused = await api.client.post("/llm/config/openai?verify=true",
                                    json={"apiKey": "bad-key-0123456789"}, headers=api.auth(1))
    assert refused.status_code == 400
    assert refused.json()["code"] == "provider_key_check_failed"
    assert "rejected the key" in refused.json()["error"]
    assert await rows(api) == []
    accepted = await api.client.post("/llm/config/openai?verify=true",
                                     json={"apiKey": "sk-good-key-0123456789"},
                                     headers=api.auth(1))
    assert accepted.status_code == 200
    assert [r[0] for r in await rows(api)] == ["openai"]
    assert [r.method for r in fake_vendor.requests_for("openai")] == ["GET", "GET"]


@pytest.mark.parametrize("mode", ["hang", "server_error"])
async def test_a_vendor_that_does_not_answer_is_unreachable_and_the_key_is_kept(
    api: Api, fake_vendor: FakeVendor, mode: str
) -> None:
    await save(api, "openai", "sk-check-openai-0002")
    before = await rows(api)
    fake_vendor.set_behaviour(mode, provider="openai")
    response = await check(api, "openai")
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "unreachable"
    assert await rows(api) == before
