"""POST /llm/chat/{provider} through the real SDK or HTTP path of every vendor, against the fake
vendor server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, update

from llm_service.db.models import ChatMessage, LLMConfig
from llm_service.providers.registry import provider_ids
from llm_service.services import history
from llm_service.services.history import NewMessage
from tests.conftest import TEST_UPSTREAM_TIMEOUT_S, Api
from tests.fakes.vendor import FakeVendor, RecordedRequest

PROVIDERS = provider_ids()
MODELS = {
    "openai": "gpt-4o-mini",
    "gemini": "gemini-3.1-flash-lite",
    "claude": "claude-haiku-4-5",
    "qwen": "qwen-plus",
    "huggingface": "meta-llama/Llama-3.1-8B-Instruct",
}
ASSISTANT_ROLE = {"gemini": "model"}


def key_of(user: int, provider: str) -> str:
    return f"sk-user{user}-{provider}-secret-key"


async def configure(api: Api, provider: str, user: int = 1, **fields: Any) -> None:
    body = {"apiKey": key_of(user, provider), "model": MODELS[provider], "temperature": 0.4,
            "maxTokens": 321, **fields}
    response = await api.client.post(f"/llm/config/{provider}", json=body, headers=api.auth(user))
    assert response.status_code == 200, response.text


async def chat(api: Api, provider: str, body: dict[str, Any], user: int = 1) -> Any:
    return await api.client.post(f"/llm/chat/{provider}", json=body, headers=api.auth(user))


def sent_key(record: RecordedRequest) -> str:
    headers = record.headers
    if record.provider == "gemini":
        return headers["x-goog-api-key"]
    if record.provider == "claude" and "x-api-key" in headers:
        return headers["x-api-key"]
    return headers["authorization"].removeprefix("Bearer ")


def sent_turns(record: RecordedRequest) -> list[tuple[str, str]]:
    body = record.body
    if record.provider == "gemini":
        return [(c["role"], "".join(p["text"] for p in c["parts"])) for c in body["contents"]]
    if record.provider == "qwen":
        return [(m["role"], m["content"]) for m in body["input"]["messages"]]
    return [(m["role"], m["content"]) for m in body["messages"]]


def sent_settings(record: RecordedRequest) -> dict[str, Any]:
    body = record.body
    if record.provider == "gemini":
        config = body["generationConfig"]
        return {"model": record.path.split("/models/")[1].split(":")[0],
                "temperature": config["temperature"], "max_tokens": config["maxOutputTokens"]}
    if record.provider == "qwen":
        params = body["parameters"]
        return {"model": body["model"], "temperature": params["temperature"],
                "max_tokens": params["max_tokens"]}
    if record.provider == "claude":
        return {"model": body["model"], "temperature": body.get("temperature"),
                "max_tokens": body["max_tokens"]}
    if record.provider == "openai":
        return {"model": body["model"], "temperature": body["temperature"],
                "max_tokens": body["max_completion_tokens"]}
    return {"model": body["model"], "temperature": body["temperature"],
            "max_tokens": body["max_tokens"]}


def words(*texts: str) -> int:
    return sum(len(text.split()) for text in texts)


async def stored_messages(api: Api) -> list[ChatMessage]:
    async with api.runtime.sessions() as session:
        return list(await session.scalars(select(ChatMessage).order_by(ChatMessage.id)))


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


async def test_answer_maps_reply_model_and_tokens(api: Api, provider: str) -> None:
    await configure(api, provider)
    response = await chat(api, provider, {"message": "Hello there", "history": []})
    assert response.status_code == 200, response.text
    body = response.json()
    reply = f"Echo from {provider} {MODELS[provider]}: Hello there"
    expected_in, expected_out = words("Hello there"), words(reply)
    stored = await stored_messages(api)
    cost = api.runtime.catalog.cost(provider, MODELS[provider], expected_in, expected_out)
    assert body == {
        "response": reply,
        "tokensUsed": expected_in + expected_out,
        "model": MODELS[provider],
        "inputTokens": expected_in,
        "outputTokens": expected_out,
        "id": stored[1].id,
        "costUsd": None if cost is None else float(cost),  # no Hugging Face prices
    }


async def test_vendor_gets_the_users_key_model_and_settings(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider)
    await chat(api, provider, {"message": "Hi"})
    (record,) = fake_vendor.requests_for(provider)
    assert sent_key(record) == key_of(1, provider)
    settings = sent_settings(record)
    # Claude's current Messages API takes no temperature: it is not sent.
    temperature = None if provider == "claude" else 0.4
    assert settings == {"model": MODELS[provider], "temperature": temperature, "max_tokens": 321}


async def test_request_history_is_the_context_in_order_with_vendor_roles(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider)
    history_items = [
        {"role": "user", "content": "first question", "timestamp": "2025-11-24T10:00:00Z"},
        {"role": "assistant", "content": "first answer", "timestamp": "2025-11-24T10:00:01Z"},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "second answer", "extra": True},
    ]
    await chat(api, provider, {"message": "third question", "history": history_items})
    (record,) = fake_vendor.requests_for(provider)
    assistant = ASSISTANT_ROLE.get(provider, "assistant")
    assert sent_turns(record) == [
        ("user", "first question"), (assistant, "first answer"),
        ("user", "second question"), (assistant, "second answer"),
        ("user", "third question"),
    ]


async def test_without_history_the_newest_stored_messages_are_the_context(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider)
    async with api.runtime.engine.begin() as conn:
        for i in range(api.settings.context_messages + 4):
            role = "user" if i % 2 == 0 else "assistant"
            await history.store_messages(conn, 1, provider, [NewMessage(role, f"old {i}", 1)])
    await chat(api, provider, {"message": "new"})
    (record,) = fake_vendor.requests_for(provider)
    assistant = ASSISTANT_ROLE.get(provider, "assistant")
    expected = [
        ("user" if i % 2 == 0 else assistant, f"old {i}")
        for i in range(4, api.settings.context_messages + 4)
    ]
    assert sent_turns(record) == [*expected, ("user", "new")]


async def test_empty_history_means_no_context(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider)
    async with api.runtime.engine.begin() as conn:
        await history.store_messages(conn, 1, provider, [NewMessage("user", "stored", 1)])
    await chat(api, provider, {"message": "fresh start", "history": []})
    (record,) = fake_vendor.requests_for(provider)
    assert sent_turns(record) == [("user", "fresh start")]


async def test_message_and_reply_are_stored_with_their_tokens(api: Api, provider: str) -> None:
    await configure(api, provider)
    body = (await chat(api, provider, {"message": "Store me please"})).json()
    page = (await api.client.get(f"/llm/history/{provider}", headers=api.auth(1))).json()
    assert page["total"] == 2
    user_row, reply_row = page["history"]
    assert (user_row["role"], user_row["content"], user_row["tokensUsed"]) == (
        "user", "Store me please", body["inputTokens"])
    assert (reply_row["role"], reply_row["content"], reply_row["tokensUsed"], reply_row["id"]) == (
        "assistant", body["response"], body["outputTokens"], body["id"])


ERRORS = [
    # mode, status, code, vendor calls (retries happen only on 5xx)
    ("auth", 400, "provider_auth_failed", 1),
    ("bad_request", 400, "provider_bad_request", 1),
    ("rate_limit", 429, "provider_rate_limited", 1),
    ("server_error", 502, "provider_error", 3),
    ("malformed", 502, "provider_error", 1),
]


@pytest.mark.parametrize(("mode", "status", "code", "calls"), ERRORS)
async def test_vendor_errors_map_to_the_contract_and_store_nothing(
    api: Api, provider: str, fake_vendor: FakeVendor, mode: str, status: int, code: str,
    calls: int,
) -> None:
    await configure(api, provider)
    fake_vendor.set_behaviour(mode, provider=provider)
    response = await chat(api, provider, {"message": "Hello"})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["success"] is False
    assert len(fake_vendor.requests_for(provider)) == calls
    assert await stored_messages(api) == []
    assert key_of(1, provider) not in response.text
    assert "secret-key" not in response.text


async def test_vendor_rate_limit_passes_on_retry_after(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider)
    fake_vendor.set_behaviour("rate_limit", provider=provider, retry_after=2.2)
    response = await chat(api, provider, {"message": "Hello"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert "try again in 3 seconds" in response.json()["error"]


async def test_error_sentences_name_the_vendor(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider)
    fake_vendor.set_behaviour("auth", provider=provider)
    message = (await chat(api, provider, {"message": "Hello"})).json()["error"]
    name = api.runtime.providers[provider].display_name
    assert message.startswith(f"{name} rejected your API key")
    assert message.endswith("check the key in the LLM settings and save it again.")


async def test_one_vendor_5xx_is_retried_and_the_chat_succeeds(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider)
    fake_vendor.set_behaviour("server_error", provider=provider, times=1)
    response = await chat(api, provider, {"message": "Hello"})
    assert response.status_code == 200, response.text
    assert len(fake_vendor.requests_for(provider)) == 2
    assert len(await stored_messages(api)) == 2


async def test_hanging_vendor_is_504_and_the_call_is_closed_not_retried(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider)
    fake_vendor.set_behaviour("hang", provider=provider)
    response = await chat(api, provider, {"message": "Hello"})
    assert response.status_code == 504
    assert response.json()["code"] == "provider_timeout"
    assert f"{TEST_UPSTREAM_TIMEOUT_S:g} seconds" in response.json()["error"]
    for _ in range(100):  # the service hung up on the vendor (it did not wait for it)
        (record,) = fake_vendor.requests_for(provider)  # no retry after a timeout
        if record.disconnected_at is not None:
            break
        await asyncio.sleep(0.02)
    assert record.disconnected_at is not None and record.finished_at is None
    assert await stored_messages(api) == []


async def test_two_users_at_once_never_cross_keys(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider, user=1)
    await configure(api, provider, user=2)
    results = await asyncio.gather(*[
        chat(api, provider, {"message": f"from user {1 + i % 2} number {i}", "history": []},
             user=1 + i % 2)
        for i in range(20)
    ])
    assert [r.status_code for r in results] == [200] * 20
    records = fake_vendor.requests_for(provider)
    assert len(records) == 20
    for record in records:
        user = int(sent_turns(record)[-1][1].split()[2])
        assert sent_key(record) == key_of(user, provider)
    for user in (1, 2):
        page = (await api.client.get(f"/llm/history/{provider}?limit=200",
                                     headers=api.auth(user))).json()
        assert page["total"] == 20
        assert all(f"from user {user} " in item["content"] for item in page["history"]
                   if item["role"] == "user")


async def test_not_configured_is_400_and_calls_no_vendor(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    response = await chat(api, provider, {"message": "Hello"})
    assert response.status_code == 400
    assert response.json()["code"] == "provider_not_configured"
    assert fake_vendor.requests_for(provider) == []


async def test_another_users_config_does_not_count(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider, user=1)
    response = await chat(api, provider, {"message": "Hello"}, user=2)
    assert response.json()["code"] == "provider_not_configured"
    assert fake_vendor.requests_for(provider) == []


async def test_unreadable_key_is_400_and_calls_no_vendor(
    api: Api, provider: str, fake_vendor: FakeVendor
) -> None:
    await configure(api, provider, user=1)
    await configure(api, provider, user=2)
    async with api.runtime.sessions.begin() as session:
        other = await session.scalar(select(LLMConfig.api_key_encrypted).where(
            LLMConfig.user_id == 2, LLMConfig.provider == provider))
        await session.execute(update(LLMConfig).where(
            LLMConfig.user_id == 1, LLMConfig.provider == provider).values(api_key_encrypted=other))
    response = await chat(api, provider, {"message": "Hello"})
    assert response.status_code == 400
    assert response.json()["code"] == "provider_key_unreadable"
    assert fake_vendor.requests_for(provider) == []
