"""Helpers of the conversation tests: a configured provider, a conversation, a message."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.providers.test_chat import MODELS, key_of, sent_turns

__all__ = ["MODELS", "branch", "configure", "conversation", "key_of", "say", "sent_turns"]


async def configure(api: Api, provider: str = "openai", user: int = 1, **fields: Any) -> None:
    body = {"apiKey": key_of(user, provider), "model": MODELS[provider], **fields}
    response = await api.client.post(f"/llm/config/{provider}", json=body, headers=api.auth(user))
    assert response.status_code == 200, response.text


async def conversation(api: Api, user: int = 1, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/llm/conversations", json={"provider": "openai", **fields},
                                     headers=api.auth(user))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def say(api: Api, conversation_id: int, message: str, user: int = 1,
              **fields: Any) -> dict[str, Any]:
    response = await api.client.post(f"/llm/conversations/{conversation_id}/messages",
                                     json={"message": message, **fields},
                                     headers=api.auth(user))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def branch(api: Api, conversation_id: int, user: int = 1,
                 view: str = "branch") -> dict[str, Any]:
    response = await api.client.get(f"/llm/conversations/{conversation_id}/messages",
                                    params={"view": view}, headers=api.auth(user))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]
