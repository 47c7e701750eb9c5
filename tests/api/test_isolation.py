"""User 2 can neither see, change nor delete user 1's rows, nor tell whether they exist."""

from __future__ import annotations

from llm_service.services import history
from llm_service.services.history import NewMessage
from tests.conftest import Api

KEY = "sk-user-one-secret-9876"


async def seed_user_one(api: Api) -> None:
    response = await api.client.post(
        "/llm/config/openai", json={"apiKey": KEY, "model": "gpt-4o"}, headers=api.auth(1)
    )
    assert response.status_code == 200
    async with api.runtime.engine.begin() as conn:
        await history.store_messages(conn, 1, "openai", [NewMessage("user", "private", 3)])


async def test_configs_of_another_user_are_invisible(api: Api) -> None:
    await seed_user_one(api)
    response = await api.client.get("/llm/configs", headers=api.auth(2))
    assert response.json() == {"configs": {}}


async def test_history_of_another_user_is_invisible(api: Api) -> None:
    await seed_user_one(api)
    response = await api.client.get("/llm/history/openai", headers=api.auth(2))
    assert response.json() == {"history": [], "total": 0}


async def test_delete_config_of_another_user_looks_like_nothing_there(api: Api) -> None:
    await seed_user_one(api)
    theirs = await api.client.delete("/llm/config/openai", headers=api.auth(2))
    nobody = await api.client.delete("/llm/config/gemini", headers=api.auth(2))
    assert theirs.status_code == nobody.status_code == 404
    theirs_body, nobody_body = theirs.json(), nobody.json()
    del theirs_body["requestId"], nobody_body["requestId"]
    nobody_body["error"] = nobody_body["error"].replace("gemini", "openai")
    assert theirs_body == nobody_body
    assert (await api.client.get("/llm/configs", headers=api.auth(1))).json()["configs"]


async def test_clearing_history_does_not_touch_another_users_rows(api: Api) -> None:
    await seed_user_one(api)
    await api.client.delete("/llm/history/openai", headers=api.auth(2))
    mine = await api.client.get("/llm/history/openai", headers=api.auth(1))
    assert mine.json()["total"] == 1


async def test_saving_creates_a_separate_row_and_keeps_user_ones_key(api: Api) -> None:
    await seed_user_one(api)
    update = await api.client.post(
        "/llm/config/openai", json={"model": "gpt-4.1"}, headers=api.auth(2)
    )
    # Without a key user 2 has nothing to update: the same answer as for any new user.
    assert update.status_code == 422
    assert update.json()["details"][0]["field"] == "apiKey"
    await api.client.post(
        "/llm/config/openai", json={"apiKey": "sk-user-two-key-1111"}, headers=api.auth(2)
    )
    one = (await api.client.get("/llm/configs", headers=api.auth(1))).json()["configs"]
    two = (await api.client.get("/llm/configs", headers=api.auth(2))).json()["configs"]
    assert (one["openai"]["apiKey"], one["openai"]["model"]) == ("sk-***9876", "gpt-4o")
    assert two["openai"]["apiKey"] == "sk-***1111"
