"""A conversation's system prompt (issue 15, item 4), per vendor, through each vendor's real SDK
or HTTP path to the fake vendor: exactly one system prompt reaches the vendor, in its native
place, never as a turn, after edits, regenerations (JSON and stream) and provider switches; the
order is the conversation's, else the provider configuration's (templates come next); title
calls carry their own instruction as their one system prompt. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_service.providers.registry import provider_ids
from llm_service.services import titles
from tests.conftest import Api, sse_events
from tests.fakes.vendor import FakeVendor, RecordedRequest
from tests.providers.test_system_prompt import PLACE, sent_turns

PROVIDERS = provider_ids()
CONVERSATION_PROMPT = "You are a travel planner: one short line per answer, in the user's language."
DEFAULT_PROMPTS = {p: f"Default prompt of {p}: be polite." for p in PROVIDERS}


def other(provider: str) -> str:
    return PROVIDERS[(PROVIDERS.index(provider) + 1) % len(PROVIDERS)]


async def save(api: Api, provider: str, **fields: Any) -> None:
    """A configuration with the catalogue's default model (whose place PLACE names)."""
    body = {"apiKey": f"sk-conv-system-{provider}-0001", **fields}
    response = await api.client.post(f"/llm/config/{provider}", json=body, headers=api.auth(1))
    assert response.status_code == 200, response.text


async def post(api: Api, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await api.client.post(path, json=body, headers=api.auth(1))
    assert response.status_code in (200, 201), response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        events = sse_events(response.text)
        assert events[-1][0] == "done", response.text
        return events[-1][1]  # type: ignore[no-any-return]
    return response.json()  # type: ignore[no-any-return]


def one_prompt(record: RecordedRequest, prompt: str) -> None:
    """`prompt` is the request's one system prompt, in the vendor's place, written once."""
    assert record.system_prompts == [(PLACE[record.provider], prompt)], record.body
    assert json.dumps(record.body).count(json.dumps(prompt)[1:-1]) == 1
    assert all(role not in ("system", "developer") for role, _ in sent_turns(record))


def is_title_call(record: RecordedRequest) -> bool:
    return titles.INSTRUCTIONS in json.dumps(record.body)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_conversations_prompt_arrives_once_after_edits_regenerations_and_switches(
    api: Api, fake_vendor: FakeVendor, provider: str,
) -> None:
    switch = other(provider)
    await save(api, provider, systemPrompt=DEFAULT_PROMPTS[provider])
    await save(api, switch, systemPrompt=DEFAULT_PROMPTS[switch])
    created = await post(api, "/llm/conversations",
                         {"provider": provider, "systemPrompt": CONVERSATION_PROMPT})
    url = f"/llm/conversations/{created['id']}"
    first = await post(api, url + "/messages", {"message": "three days in Lisbon?"})
    await api.runtime.background.wait_idle(10)
    second = await post(api, url + "/messages/stream", {"message": "and with children?"})
    await post(api, url + "/messages", {"message": "and with a dog?",
                                        "editOf": second["parentId"]})
    edited = await post(api, url + "/messages/stream", {"message": "by tram?"})
    await post(api, f"{url}/messages/{edited['id']}/regenerate")
    await post(api, f"{url}/messages/{edited['id']}/regenerate/stream", {})
    await post(api, url + "/messages", {"message": "ask the other one", "provider": switch})
    switched = await post(api, f"{url}/messages/{first['id']}/regenerate",
                          {"provider": switch})
    await post(api, url + "/messages", {"message": "back again", "parentId": switched["id"]})

    records = fake_vendor.requests
    chats = [r for r in records if not is_title_call(r)]
    assert [r.provider for r in chats] == [provider] * 6 + [switch] * 2 + [provider]
    for record in chats:
        one_prompt(record, CONVERSATION_PROMPT)
        assert DEFAULT_PROMPTS[provider] not in json.dumps(record.body)
        assert DEFAULT_PROMPTS[switch] not in json.dumps(record.body)
    (title_call,) = [r for r in records if is_title_call(r)]
    one_prompt(title_call, titles.INSTRUCTIONS)
    assert CONVERSATION_PROMPT not in json.dumps(title_call.body)
    # The branch the last message followed: the regeneration by the other provider.
    assert sent_turns(chats[-1])[-3:-1] == [
        ("user", "three days in Lisbon?"),
        ("model" if provider == "gemini" else "assistant", switched["response"])]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_without_its_own_the_provider_default_is_sent_and_the_conversations_wins(
    api: Api, fake_vendor: FakeVendor, provider: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.runtime.settings, "auto_titles", False)
    switch = other(provider)
    await save(api, provider, systemPrompt=DEFAULT_PROMPTS[provider])
    await save(api, switch, systemPrompt=DEFAULT_PROMPTS[switch])
    created = await post(api, "/llm/conversations", {"provider": provider})
    url = f"/llm/conversations/{created['id']}"

    async def preview(**params: str) -> dict[str, Any]:
        response = await api.client.get(url + "/preview", params=params, headers=api.auth(1))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    assert ((await preview())["system"], (await preview())["systemSource"]) == (
        DEFAULT_PROMPTS[provider], "provider")
    await post(api, url + "/messages", {"message": "one"})
    one_prompt(fake_vendor.requests[-1], DEFAULT_PROMPTS[provider])
    await post(api, url + "/messages", {"message": "two", "provider": switch})
    one_prompt(fake_vendor.requests[-1], DEFAULT_PROMPTS[switch])
    assert (await preview(provider=switch))["system"] == DEFAULT_PROMPTS[switch]

    response = await api.client.patch(url, json={"systemPrompt": CONVERSATION_PROMPT},
                                      headers=api.auth(1))
    assert response.status_code == 200
    assert ((await preview())["system"], (await preview())["systemSource"]) == (
        CONVERSATION_PROMPT, "conversation")
    await post(api, url + "/messages", {"message": "three"})
    one_prompt(fake_vendor.requests[-1], CONVERSATION_PROMPT)
    await post(api, url + "/messages/stream", {"message": "four", "provider": switch})
    one_prompt(fake_vendor.requests[-1], CONVERSATION_PROMPT)

    await api.client.patch(url, json={"systemPrompt": None}, headers=api.auth(1))
    await post(api, url + "/messages", {"message": "five"})
    one_prompt(fake_vendor.requests[-1], DEFAULT_PROMPTS[provider])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_with_no_prompt_anywhere_none_arrives(
    api: Api, fake_vendor: FakeVendor, provider: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.runtime.settings, "auto_titles", False)
    await save(api, provider)
    created = await post(api, "/llm/conversations", {"provider": provider})
    url = f"/llm/conversations/{created['id']}"
    answer = await post(api, url + "/messages", {"message": "one"})
    await post(api, f"{url}/messages/{answer['id']}/regenerate/stream")
    preview = (await api.client.get(url + "/preview", headers=api.auth(1))).json()
    assert (preview["system"], preview["systemSource"]) == (None, None)
    for record in fake_vendor.requests:
        assert record.system_prompts == []
        assert len(sent_turns(record)) == 1
