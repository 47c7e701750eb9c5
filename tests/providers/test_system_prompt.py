"""A provider's system prompt (issue 15): saved with the configuration, sent by both chat routes
through each vendor's real SDK or HTTP path to the fake vendor, exactly once and in the vendor's
own place for it, never as a turn; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from llm_service.providers.registry import provider_ids
from llm_service.services import history
from llm_service.services.history import NewMessage
from tests.conftest import Api
from tests.fakes.vendor import FakeVendor, RecordedRequest

PROVIDERS = provider_ids()
PROMPT = "You are the platform's assistant: answer in one short line, in the user's language."
# Where each vendor reads the system prompt, as the fake records it, for the catalogue's default
# model of each (OpenAI's, gpt-6.2-sol, is a reasoning model: a developer message).
PLACE = {
    "openai": "messages[0] developer",
    "gemini": "systemInstruction",
    "claude": "system",
    "qwen": "input.messages[0] system",
    "huggingface": "messages[0] system",
}
ASSISTANT_ROLE = {"gemini": "model"}
HISTORY = [
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
]


async def save(api: Api, provider: str, **fields: Any) -> None:
    body = {"apiKey": f"sk-system-{provider}-0001", **fields}
    response = await api.client.post(f"/llm/config/{provider}", json=body, headers=api.auth(1))
    assert response.status_code == 200, response.text


async def chat(api: Api, provider: str, body: dict[str, Any], *, stream: bool) -> httpx2.Response:
    path = f"/llm/chat/{provider}/stream" if stream else f"/llm/chat/{provider}"
    response = await api.client.post(path, json=body, headers=api.auth(1))
    assert response.status_code == 200, response.text
    if stream:
        assert "event: done" in response.text and "event: error" not in response.text
    return response


def sent_turns(record: RecordedRequest) -> list[tuple[str, str]]:
    """The conversation's turns as sent, in the vendor's roles, without system messages."""
    body = record.body
    if record.provider == "gemini":
        turns = [(c["role"], "".join(p["text"] for p in c["parts"])) for c in body["contents"]]
    else:
        messages = body["input"]["messages"] if record.provider == "qwen" else body["messages"]
        turns = [(m["role"], m["content"]) for m in messages]
    return [turn for turn in turns if turn[0] not in ("system", "developer")]


def words(*texts: str) -> int:
    return sum(len(text.split()) for text in texts)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("context", ["request_history", "stored_history", "no_history"])
async def test_the_system_prompt_arrives_once_in_the_vendors_place_and_not_as_a_turn(
    api: Api, fake_vendor: FakeVendor, provider: str, stream: bool, context: str
) -> None:
    await save(api, provider, systemPrompt=PROMPT)
    body: dict[str, Any] = {"message": "hello there"}
    if context == "request_history":
        body["history"] = HISTORY
    elif context == "stored_history":
        async with api.runtime.engine.begin() as conn:
            await history.store_messages(conn, 1, provider, [
                NewMessage(item["role"], item["content"], 1) for item in HISTORY])
    else:
        body["history"] = []
    response = await chat(api, provider, body, stream=stream)

    (record,) = fake_vendor.requests_for(provider)
    assert record.system_prompts == [(PLACE[provider], PROMPT)]
    assert json.dumps(record.body).count(PROMPT) == 1
    assistant = ASSISTANT_ROLE.get(provider, "assistant")
    before = [] if context == "no_history" else [("user", "first question"),
                                                  (assistant, "first answer")]
    assert sent_turns(record) == [*before, ("user", "hello there")]
    if not stream:  # the fake counts the system prompt's words as input, as vendors bill it
        context_words = 0 if context == "no_history" else words("first question", "first answer")
        assert response.json()["inputTokens"] == words(PROMPT, "hello there") + context_words


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_without_a_system_prompt_none_arrives(
    api: Api, fake_vendor: FakeVendor, provider: str, stream: bool
) -> None:
    await save(api, provider)
    await chat(api, provider, {"message": "hello there", "history": HISTORY}, stream=stream)
    (record,) = fake_vendor.requests_for(provider)
    assert record.system_prompts == []
    assert "system" not in record.body and "systemInstruction" not in record.body
    assert len(sent_turns(record)) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_removed_system_prompt_is_no_longer_sent(
    api: Api, fake_vendor: FakeVendor, provider: str
) -> None:
    await save(api, provider, systemPrompt=PROMPT)
    await save(api, provider, systemPrompt="  ")
    await chat(api, provider, {"message": "hello there"}, stream=False)
    (record,) = fake_vendor.requests_for(provider)
    assert record.system_prompts == []


@pytest.mark.parametrize(
    ("model", "role"),
    [("gpt-6.2-sol", "developer"), ("gpt-5.4", "developer"), ("o3", "developer"),
     ("o9-mini", "developer"),  # an o-series id the catalogue does not list: its family rule
     ("gpt-4o-mini", "system"), ("gpt-4.1", "system"), ("my-fine-tune", "system")],
)
async def test_openai_gets_a_developer_message_for_reasoning_models_else_a_system_one(
    api: Api, fake_vendor: FakeVendor, model: str, role: str
) -> None:
    await save(api, "openai", model=model, systemPrompt=PROMPT)
    for stream in (False, True):
        await chat(api, "openai", {"message": "hello there"}, stream=stream)
    for record in fake_vendor.requests_for("openai"):
        assert record.body["messages"][0] == {"role": role, "content": PROMPT}
        assert record.system_prompts == [(f"messages[0] {role}", PROMPT)]


async def test_hugging_face_gets_a_system_message_even_for_an_openai_reasoning_model(
    api: Api, fake_vendor: FakeVendor
) -> None:
    await save(api, "huggingface", model="openai/gpt-oss-120b", systemPrompt=PROMPT)
    await chat(api, "huggingface", {"message": "hello there"}, stream=False)
    (record,) = fake_vendor.requests_for("huggingface")
    assert record.system_prompts == [("messages[0] system", PROMPT)]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stored_row_of_another_role_never_becomes_a_turn(
    api: Api, fake_vendor: FakeVendor, provider: str
) -> None:
    await save(api, provider, systemPrompt=PROMPT)
    async with api.runtime.engine.begin() as conn:
        await history.store_messages(conn, 1, provider, [
            NewMessage("user", "first question", 1), NewMessage("system", "stored aside", 1),
            NewMessage("assistant", "first answer", 1)])
    await chat(api, provider, {"message": "hello there"}, stream=False)
    (record,) = fake_vendor.requests_for(provider)
    assert "stored aside" not in json.dumps(record.body)
    assert record.system_prompts == [(PLACE[provider], PROMPT)]
    assert [text for _, text in sent_turns(record)] == ["first question", "first answer",
                                                        "hello there"]
