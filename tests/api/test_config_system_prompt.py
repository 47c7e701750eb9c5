"""`systemPrompt` of POST /llm/config/{provider} and GET /llm/configs (issue 15): set, read
back, kept when left out, removed by an empty or blank string, bounded by
LLM_MAX_SYSTEM_PROMPT_CHARS, NUL and null refused."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from llm_service.db.models import LLMConfig
from tests.conftest import Api, AppFactory

KEY = "sk-proj-abcdefghijklmnop1234"
PROMPT = "You are the platform's assistant. Answer briefly, in the user's language."


async def save(api: Api, body: dict[str, Any], provider: str = "openai") -> Any:
    return await api.client.post(f"/llm/config/{provider}", json=body, headers=api.auth(1))


async def listed_prompt(api: Api, provider: str = "openai") -> Any:
    response = await api.client.get("/llm/configs", headers=api.auth(1))
    assert response.status_code == 200
    return response.json()["configs"][provider]["systemPrompt"]


async def stored_prompt(api: Api) -> str | None:
    async with api.runtime.sessions() as session:
        return await session.scalar(select(LLMConfig.system_prompt))


async def test_a_configuration_without_one_lists_it_as_null(api: Api) -> None:
    assert (await save(api, {"apiKey": KEY})).status_code == 200
    assert await listed_prompt(api) is None


async def test_one_saved_with_the_key_is_read_back_as_typed(api: Api) -> None:
    typed = f"  {PROMPT}\n"
    response = await save(api, {"apiKey": KEY, "systemPrompt": typed})
    assert response.json() == {"success": True, "message": "Configuration saved"}
    assert await listed_prompt(api) == typed
    assert await stored_prompt(api) == typed


async def test_an_update_sets_it_and_an_update_without_it_keeps_it(api: Api) -> None:
    await save(api, {"apiKey": KEY})
    assert (await save(api, {"systemPrompt": PROMPT})).status_code == 200
    assert (await save(api, {"model": "gpt-4o-mini", "temperature": 0.2})).status_code == 200
    assert await listed_prompt(api) == PROMPT


async def test_it_belongs_to_one_provider(api: Api) -> None:
    await save(api, {"apiKey": KEY, "systemPrompt": PROMPT})
    await save(api, {"apiKey": KEY}, provider="claude")
    assert await listed_prompt(api, "claude") is None


@pytest.mark.parametrize("blank", ["", "   ", "\n\t \r\n", "\u3000"])
async def test_an_empty_or_blank_one_removes_it(api: Api, blank: str) -> None:
    await save(api, {"apiKey": KEY, "systemPrompt": PROMPT})
    assert (await save(api, {"systemPrompt": blank})).status_code == 200
    assert await listed_prompt(api) is None
    assert await stored_prompt(api) is None


async def test_the_longest_allowed_is_saved(api: Api) -> None:
    longest = "x" * api.settings.max_system_prompt_chars
    assert (await save(api, {"apiKey": KEY, "systemPrompt": longest})).status_code == 200
    assert await listed_prompt(api) == longest


async def test_a_longer_one_is_422_and_changes_nothing(api: Api) -> None:
    await save(api, {"apiKey": KEY, "systemPrompt": PROMPT})
    response = await save(api, {"systemPrompt": "x" * 8001})
    assert response.status_code == 422
    body = response.json()
    reason = "Value error, must be at most 8000 characters (this one has 8001); shorten it"
    assert body["code"] == "validation_error"
    assert body["details"] == [{"field": "systemPrompt", "reason": reason}]
    assert body["error"] == f"Check the request: systemPrompt: {reason}."
    assert await listed_prompt(api) == PROMPT


async def test_the_bound_is_the_setting(make_api: AppFactory) -> None:
    async with make_api(LLM_MAX_SYSTEM_PROMPT_CHARS=20) as api:
        assert (await save(api, {"apiKey": KEY, "systemPrompt": "x" * 20})).status_code == 200
        response = await save(api, {"systemPrompt": "x" * 21})
        assert response.status_code == 422
        assert "must be at most 20 characters" in response.json()["error"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("be\x00brief", "Value error, must not contain NUL characters (U+0000)"),
        (None, 'Value error, must not be null; send "" to remove the system prompt, or leave '
               "the field out to keep it"),
        (42, "Input should be a valid string"),
        (["be brief"], "Input should be a valid string"),
    ],
    ids=["nul", "null", "number", "list"],
)
async def test_a_nul_a_null_or_a_non_string_is_422_and_nothing_is_saved(
    api: Api, value: Any, reason: str
) -> None:
    response = await save(api, {"apiKey": KEY, "systemPrompt": value})
    assert response.status_code == 422
    assert response.json()["details"] == [{"field": "systemPrompt", "reason": reason}]
    async with api.runtime.sessions() as session:
        assert await session.scalar(select(LLMConfig.id)) is None
