"""GET and DELETE /llm/history/{provider}: paging order, bounds, totals. Chat does not exist yet,
so rows are written through the service layer."""

from __future__ import annotations

import pytest

from llm_service.services import history
from llm_service.services.history import NewMessage
from tests.conftest import Api


async def write(api: Api, user: int, provider: str, count: int) -> None:
    """`count` messages, alternating user/assistant, content "m0", "m1", ... oldest first."""
    async with api.runtime.engine.begin() as conn:
        for i in range(count):
            role = "user" if i % 2 == 0 else "assistant"
            await history.store_messages(conn, user, provider, [NewMessage(role, f"m{i}", i)])


async def get(api: Api, query: str = "", user: int = 1, provider: str = "openai") -> dict:
    response = await api.client.get(f"/llm/history/{provider}{query}", headers=api.auth(user))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_empty_history(api: Api) -> None:
    assert await get(api) == {"history": [], "total": 0}


async def test_item_shape(api: Api) -> None:
    await write(api, 1, "openai", 2)
    body = await get(api)
    assert body["total"] == 2
    first, second = body["history"]
    assert set(first) == {"id", "role", "content", "tokensUsed", "createdAt"}
    assert (first["role"], first["content"], first["tokensUsed"]) == ("user", "m0", 0)
    assert (second["role"], second["content"], second["tokensUsed"]) == ("assistant", "m1", 1)
    assert first["createdAt"].endswith("Z")
    assert second["id"] > first["id"]


async def test_default_page_is_the_50_newest_oldest_first(api: Api) -> None:
    await write(api, 1, "openai", 60)
    body = await get(api)
    assert body["total"] == 60
    assert [item["content"] for item in body["history"]] == [f"m{i}" for i in range(10, 60)]


async def test_offset_counts_back_from_the_newest(api: Api) -> None:
    await write(api, 1, "openai", 10)
    body = await get(api, "?limit=3&offset=2")
    assert [item["content"] for item in body["history"]] == ["m5", "m6", "m7"]
    assert body["total"] == 10


async def test_offset_past_the_end_is_an_empty_page_with_total(api: Api) -> None:
    await write(api, 1, "openai", 4)
    assert await get(api, "?offset=4") == {"history": [], "total": 4}


async def test_same_instant_rows_keep_insertion_order(api: Api) -> None:
    async with api.runtime.engine.begin() as conn:
        await history.store_messages(
            conn, 1, "openai", [NewMessage("user", "q", 1), NewMessage("assistant", "a", 2)]
        )
    body = await get(api, "?limit=1")
    assert [item["content"] for item in body["history"]] == ["a"]
    assert [item["content"] for item in (await get(api))["history"]] == ["q", "a"]


async def test_history_is_per_provider(api: Api) -> None:
    await write(api, 1, "openai", 3)
    await write(api, 1, "claude", 1)
    assert (await get(api, provider="claude"))["total"] == 1
    assert (await get(api, provider="openai"))["total"] == 3


@pytest.mark.parametrize("query", ["?limit=1", "?limit=200", "?offset=0", "?offset=1000000"])
async def test_bounds_just_inside_are_accepted(api: Api, query: str) -> None:
    await get(api, query)


@pytest.mark.parametrize(
    ("query", "field"),
    [("?limit=0", "limit"), ("?limit=201", "limit"), ("?offset=-1", "offset"),
     ("?limit=ten", "limit"), ("?offset=1.5", "offset")],
)
async def test_bounds_just_outside_are_422(api: Api, query: str, field: str) -> None:
    response = await api.client.get(f"/llm/history/openai{query}", headers=api.auth(1))
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["details"][0]["field"] == field


async def test_clear_removes_only_that_provider(api: Api) -> None:
    await write(api, 1, "openai", 3)
    await write(api, 1, "qwen", 2)
    response = await api.client.delete("/llm/history/openai", headers=api.auth(1))
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Chat history cleared"}
    assert (await get(api))["total"] == 0
    assert (await get(api, provider="qwen"))["total"] == 2


async def test_clear_with_nothing_to_clear_succeeds(api: Api) -> None:
    response = await api.client.delete("/llm/history/gemini", headers=api.auth(1))
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Chat history cleared"}


async def test_deleting_a_config_keeps_history(api: Api) -> None:
    await api.client.post("/llm/config/openai", json={"apiKey": "sk-12345678"},
                          headers=api.auth(1))
    await write(api, 1, "openai", 2)
    await api.client.delete("/llm/config/openai", headers=api.auth(1))
    assert (await get(api))["total"] == 2


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_unknown_provider_is_404(api: Api, method: str) -> None:
    response = await api.client.request(method, "/llm/history/bard", headers=api.auth(1))
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_provider"
