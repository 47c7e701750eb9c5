"""Stored keys tampered with or moved by raw SQL do not decrypt: the chat says so and calls no
vendor."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.conftest import Api
from tests.fakes.vendor import FakeVendor


async def save(api: Api, user: int, provider: str, key: str) -> None:
    response = await api.client.post(f"/llm/config/{provider}", json={"apiKey": key},
                                      headers=api.auth(user))
    assert response.status_code == 200


async def stored(api: Api, user: int, provider: str) -> str:
    async with api.runtime.engine.connect() as conn:
        return str((await conn.execute(
            text("SELECT api_key_encrypted FROM llm_configs WHERE user_id = :u AND provider = :p"),
            {"u": user, "p": provider},
        )).scalar_one())


async def overwrite(api: Api, user: int, provider: str, value: str) -> None:
    async with api.runtime.engine.begin() as conn:
        await conn.execute(
            text("UPDATE llm_configs SET api_key_encrypted = :v WHERE user_id = :u"
                 " AND provider = :p"),
            {"v": value, "u": user, "p": provider},
        )


async def chat_fails_unreadable(api: Api, fake: FakeVendor, user: int, provider: str) -> None:
    response = await api.client.post(f"/llm/chat/{provider}", json={"message": "hi"},
                                     headers=api.auth(user))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "provider_key_unreadable"
    assert "enter it again in the LLM settings" in body["error"]
    assert fake.requests_for(provider) == []


async def test_swapped_between_users(api: Api, fake_vendor: FakeVendor) -> None:
    await save(api, 1, "openai", "sk-first-user-key-111")
    await save(api, 2, "openai", "sk-second-user-key-222")
    first, second = await stored(api, 1, "openai"), await stored(api, 2, "openai")
    await overwrite(api, 1, "openai", second)
    await overwrite(api, 2, "openai", first)
    await chat_fails_unreadable(api, fake_vendor, 1, "openai")
    await chat_fails_unreadable(api, fake_vendor, 2, "openai")


async def test_moved_to_another_provider_of_the_same_user(
    api: Api, fake_vendor: FakeVendor
) -> None:
    await save(api, 1, "openai", "sk-openai-key-3333")
    await save(api, 1, "qwen", "sk-qwen-key-44444")
    await overwrite(api, 1, "qwen", await stored(api, 1, "openai"))
    await chat_fails_unreadable(api, fake_vendor, 1, "qwen")


@pytest.mark.parametrize("position", [3, 12, 20, -6])
async def test_one_changed_character(api: Api, fake_vendor: FakeVendor, position: int) -> None:
    await save(api, 1, "claude", "sk-ant-claude-key-555")
    value = await stored(api, 1, "claude")
    index = position % len(value)
    changed = value[:index] + ("A" if value[index] != "A" else "B") + value[index + 1:]
    await overwrite(api, 1, "claude", changed)
    await chat_fails_unreadable(api, fake_vendor, 1, "claude")


async def test_a_plain_key_written_into_the_column(api: Api, fake_vendor: FakeVendor) -> None:
    await save(api, 1, "gemini", "AIza-original-key-666")
    await overwrite(api, 1, "gemini", "AIza-plaintext-someone-wrote")
    await chat_fails_unreadable(api, fake_vendor, 1, "gemini")


async def test_saving_again_repairs_it(api: Api, fake_vendor: FakeVendor) -> None:
    await save(api, 1, "openai", "sk-original-key-777")
    await overwrite(api, 1, "openai", "v1.deadbeef.AAAA")
    await chat_fails_unreadable(api, fake_vendor, 1, "openai")
    await save(api, 1, "openai", "sk-saved-again-888")
    response = await api.client.post("/llm/chat/openai", json={"message": "hi"},
                                     headers=api.auth(1))
    assert response.status_code == 200
