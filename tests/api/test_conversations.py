"""Conversations (issue 15, items 1 and 6): create, read, list (filters, order, cursor paging),
change, delete, the limits, ids in paths, sanitized text, and the default threads untouched;
on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from llm_service.db.models import ChatMessage, Conversation
from llm_service.services import history
from tests.api.conversation_helpers import MODELS, branch, configure, conversation, say
from tests.conftest import Api, AppFactory
from tests.fakes.vendor import FakeVendor

NOT_FOUND = {"success": False, "code": "not_found",
             "error": "No such conversation: check its id (it may have been deleted)."}


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "requestId"}


async def count(api: Api, model: Any, **where: Any) -> int:
    async with api.runtime.sessions() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(await session.scalar(query) or 0)


async def test_a_new_conversation_takes_the_configured_model_and_has_no_title_yet(
    api: Api,
) -> None:
    await configure(api)
    created = await conversation(api)
    assert {k: created[k] for k in ("provider", "model", "title", "titleSource", "systemPrompt",
                                    "pinned", "archived", "activeLeafId", "messageCount",
                                    "lastMessageAt")} == {
        "provider": "openai", "model": MODELS["openai"], "title": None, "titleSource": None,
        "systemPrompt": None, "pinned": False, "archived": False, "activeLeafId": None,
        "messageCount": 0, "lastMessageAt": None}
    assert created["createdAt"].endswith("Z")
    read = await api.client.get(f"/llm/conversations/{created['id']}", headers=api.auth(1))
    assert read.status_code == 200 and read.json() == created


async def test_create_takes_model_title_system_prompt_and_pin(api: Api) -> None:
    await configure(api)
    created = await conversation(api, model="gpt-4o", title="Trip to Lisbon",
                                 systemPrompt="You plan trips.", pinned=True)
    assert (created["model"], created["title"], created["titleSource"], created["systemPrompt"],
            created["pinned"]) == ("gpt-4o", "Trip to Lisbon", "user", "You plan trips.", True)


async def test_create_with_an_unconfigured_provider_is_400_provider_not_configured(
    api: Api,
) -> None:
    response = await api.client.post("/llm/conversations", json={"provider": "claude"},
                                     headers=api.auth(1))
    assert response.status_code == 400
    assert response.json()["code"] == "provider_not_configured"
    assert await count(api, Conversation) == 0


async def test_create_validates_its_fields(api: Api) -> None:
    await configure(api)
    for body, field in [
        ({"provider": "mistral"}, "provider"),
        ({}, "provider"),
        ({"provider": "openai", "model": "bad model"}, "model"),
        ({"provider": "openai", "title": "   "}, "title"),
        ({"provider": "openai", "title": "t" * 201}, "title"),
        ({"provider": "openai", "systemPrompt": "   "}, "systemPrompt"),
        ({"provider": "openai", "pinned": "yes"}, "pinned"),
    ]:
        response = await api.client.post("/llm/conversations", json=body, headers=api.auth(1))
        assert response.status_code == 422, body
        assert response.json()["details"][0]["field"] == field, body


async def test_a_system_prompt_over_the_limit_is_422(make_api: AppFactory) -> None:
    async with make_api(LLM_MAX_SYSTEM_PROMPT_CHARS=100) as api:
        await configure(api)
        created = await conversation(api, systemPrompt="p" * 100)
        too_long = await api.client.post("/llm/conversations",
                                         json={"provider": "openai", "systemPrompt": "p" * 101},
                                         headers=api.auth(1))
        patched = await api.client.patch(f"/llm/conversations/{created['id']}",
                                         json={"systemPrompt": "p" * 101}, headers=api.auth(1))
    for response in (too_long, patched):
        assert response.status_code == 422
        assert response.json()["details"] == [{
            "field": "systemPrompt",
            "reason": "Value error, must be at most 100 characters (LLM_MAX_SYSTEM_PROMPT_CHARS)"}]


async def test_more_conversations_than_the_limit_is_413(make_api: AppFactory) -> None:
    async with make_api(LLM_MAX_CONVERSATIONS=2) as api:
        await configure(api)
        first = await conversation(api)
        await conversation(api)
        third = await api.client.post("/llm/conversations", json={"provider": "openai"},
                                      headers=api.auth(1))
        fork = await api.client.post(f"/llm/conversations/{first['id']}/fork", json={},
                                     headers=api.auth(1))
        others = await api.client.post("/llm/conversations", json={"provider": "openai"},
                                       headers=api.auth(2))
    for response in (third, fork):
        assert response.status_code == 413
        assert response.json()["code"] == "too_many_conversations"
        assert "2 conversations" in response.json()["error"]
    assert others.status_code == 400  # user 2 is not held to user 1's count (and unconfigured)


async def test_more_messages_than_the_limit_is_413_before_the_vendor_is_called(
    make_api: AppFactory, fake_vendor: FakeVendor,
) -> None:
    async with make_api(LLM_MAX_CONVERSATION_MESSAGES=4, LLM_AUTO_TITLES="false") as api:
        await configure(api)
        created = await conversation(api)
        await say(api, created["id"], "one")
        answer = await say(api, created["id"], "two")
        calls = len(fake_vendor.requests)
        third = await api.client.post(f"/llm/conversations/{created['id']}/messages",
                                      json={"message": "three"}, headers=api.auth(1))
        again = await api.client.post(
            f"/llm/conversations/{created['id']}/messages/{answer['id']}/regenerate",
            headers=api.auth(1))
    for response in (third, again):
        assert response.status_code == 413
        assert response.json()["code"] == "conversation_full"
        assert "4 messages" in response.json()["error"]
    assert len(fake_vendor.requests) == calls


async def test_patch_renames_pins_archives_and_sets_the_system_prompt(api: Api) -> None:
    await configure(api)
    created = await conversation(api, systemPrompt="Be brief.")
    url = f"/llm/conversations/{created['id']}"
    renamed = (await api.client.patch(url, json={"title": "Renamed"}, headers=api.auth(1))).json()
    assert (renamed["title"], renamed["titleSource"]) == ("Renamed", "user")
    pinned = (await api.client.patch(url, json={"pinned": True, "archived": True},
                                     headers=api.auth(1))).json()
    assert (pinned["pinned"], pinned["archived"], pinned["systemPrompt"]) == (
        True, True, "Be brief.")
    cleared = (await api.client.patch(url, json={"systemPrompt": None},
                                      headers=api.auth(1))).json()
    assert cleared["systemPrompt"] is None and cleared["title"] == "Renamed"
    assert cleared["updatedAt"] >= created["updatedAt"]
    for body, field in [({"title": None}, "title"), ({"pinned": None}, "pinned"),
                        ({"archived": 1}, "archived"), ({"activeMessageId": 0},
                                                        "activeMessageId")]:
        refused = await api.client.patch(url, json=body, headers=api.auth(1))
        assert refused.status_code == 422 and refused.json()["details"][0]["field"] == field


async def test_stored_messages_and_titles_are_sanitized(api: Api) -> None:
    await configure(api)
    created = await conversation(api, title="Plan <script>alert(1)</script>",
                                 systemPrompt="Hi <img src=x onerror=alert(1)> there")
    assert created["title"] == "Plan"
    # A system prompt is an instruction for the vendor, stored and sent as typed (as a
    # configuration's is), never rendered as a message.
    assert created["systemPrompt"] == "Hi <img src=x onerror=alert(1)> there"
    await say(api, created["id"], "Look <script>steal()</script> `a < b`")
    stored = (await branch(api, created["id"]))["messages"][0]["content"]
    assert stored == "Look  `a < b`"


async def test_delete_takes_the_messages_with_it(api: Api) -> None:
    await configure(api)
    kept, gone = await conversation(api), await conversation(api)
    await say(api, kept["id"], "keep me")
    await say(api, gone["id"], "forget me")
    deleted = await api.client.delete(f"/llm/conversations/{gone['id']}", headers=api.auth(1))
    assert deleted.json() == {"success": True, "message": "Conversation deleted"}
    await api.runtime.background.wait_idle(10)
    assert await count(api, ChatMessage, conversation_id=gone["id"]) == 0
    assert await count(api, ChatMessage, conversation_id=kept["id"]) >= 2
    again = await api.client.get(f"/llm/conversations/{gone['id']}", headers=api.auth(1))
    assert again.status_code == 404 and without_request_id(again.json()) == NOT_FOUND


async def test_ids_that_cannot_be_a_conversation_are_404_like_a_missing_one(api: Api) -> None:
    await configure(api)
    mine = await conversation(api)
    for bad in ("abc", "0", "-1", "1.5", "99999999999999999999", "9223372036854775808",
                "\uff11\uff12", str(mine["id"] + 1000)):
        for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "/messages"),
                               ("GET", "/preview")]:
            response = await api.client.request(method, f"/llm/conversations/{bad}{suffix}",
                                                headers=api.auth(1))
            assert response.status_code == 404, (bad, suffix)
            assert without_request_id(response.json()) == NOT_FOUND, (bad, suffix)


async def test_another_users_conversation_is_answered_as_a_missing_one(api: Api) -> None:
    await configure(api)
    await configure(api, user=2)
    owner = await conversation(api, title="private")
    await say(api, owner["id"], "owner secret")
    missing = owner["id"] + 1000
    for method, suffix, body in [
        ("GET", "", None), ("PATCH", "", {"title": "mine now"}), ("DELETE", "", None),
        ("GET", "/messages", None), ("GET", "/preview", None), ("POST", "/fork", {}),
        ("POST", "/messages", {"message": "hi"}), ("POST", "/messages/stream", {"message": "x"}),
    ]:
        answers = []
        for target in (owner["id"], missing):
            response = await api.client.request(method, f"/llm/conversations/{target}{suffix}",
                                                json=body, headers=api.auth(2))
            answers.append((response.status_code, without_request_id(response.json())))
        assert answers[0] == answers[1] == (404, NOT_FOUND), (method, suffix)
    assert (await api.client.get(f"/llm/conversations/{owner['id']}",
                                 headers=api.auth(1))).json()["title"] == "private"


async def test_list_is_newest_activity_first_and_filters(api: Api) -> None:
    await configure(api)
    await configure(api, "claude")
    first = await conversation(api)
    second = await conversation(api, provider="claude", pinned=True)
    third = await conversation(api)
    await say(api, first["id"], "first becomes the newest")

    async def ids(**params: Any) -> list[int]:
        response = await api.client.get("/llm/conversations", params=params, headers=api.auth(1))
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["conversations"]]

    assert await ids() == [first["id"], third["id"], second["id"]]
    assert await ids(provider="claude") == [second["id"]]
    assert await ids(pinned="true") == [second["id"]]
    assert await ids(pinned="false") == [first["id"], third["id"]]
    await api.client.patch(f"/llm/conversations/{third['id']}", json={"archived": True},
                           headers=api.auth(1))
    assert await ids() == [first["id"], second["id"]]
    assert await ids(archived="true") == [third["id"]]
    assert await ids(provider="qwen") == []
    refused = await api.client.get("/llm/conversations", params={"provider": "mistral"},
                                   headers=api.auth(1))
    assert refused.status_code == 422


async def test_cursor_paging_visits_every_conversation_once(api: Api) -> None:
    await configure(api)
    made = [(await conversation(api))["id"] for _ in range(7)]
    await say(api, made[2], "activity")
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/llm/conversations", params=params,
                                     headers=api.auth(1))).json()
        seen += [c["id"] for c in page["conversations"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    expected = [made[2], *[i for i in reversed(made) if i != made[2]]]
    assert seen == expected


async def test_a_cursor_that_the_list_did_not_give_is_422(api: Api) -> None:
    for cursor in ("nonsense", "MTow", "LTE6MQ", "x" * 201):
        response = await api.client.get("/llm/conversations", params={"cursor": cursor},
                                        headers=api.auth(1))
        assert response.status_code == 422, cursor
        assert response.json()["details"][0]["field"] == "cursor"


async def test_conversation_messages_stay_out_of_the_default_thread(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    await configure(api)
    await api.client.post("/llm/chat/openai", json={"message": "default thread"},
                          headers=api.auth(1))
    created = await conversation(api)
    await say(api, created["id"], "inside the conversation")
    page = (await api.client.get("/llm/history/openai", headers=api.auth(1))).json()
    assert page["history"][0]["content"] == "default thread"
    assert page["total"] == 2
    fake_vendor.reset()
    await api.client.post("/llm/chat/openai", json={"message": "next"}, headers=api.auth(1))
    assert "inside the conversation" not in repr(fake_vendor.requests[0].body)
    cleared = await api.client.delete("/llm/history/openai", headers=api.auth(1))
    assert cleared.status_code == 200
    assert [m["content"] for m in (await branch(api, created["id"]))["messages"]] == [
        "inside the conversation", "Echo from openai gpt-4o-mini: inside the conversation"]


async def test_pruning_recounts_the_conversations_it_shortened(api: Api) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from llm_service.db.models import utcnow

    await configure(api)
    created = await conversation(api)
    await say(api, created["id"], "old")
    await api.runtime.background.wait_idle(10)
    old = utcnow() - timedelta(days=40)
    async with api.runtime.engine.begin() as conn:
        await conn.execute(update(ChatMessage).values(created_at=old))
        await conn.execute(update(Conversation).values(created_at=old))
    await say(api, created["id"], "new")
    async with api.runtime.engine.begin() as conn:
        await history.prune(conn, 30)
    read = (await api.client.get(f"/llm/conversations/{created['id']}",
                                 headers=api.auth(1))).json()
    assert read["messageCount"] == 2
    assert [m["content"] for m in (await branch(api, created["id"]))["messages"]] == [
        "new", "Echo from openai gpt-4o-mini: new"]


async def test_a_conversation_deleted_while_the_vendor_answers_gets_the_answer_unsaved(
    api: Api,
) -> None:
    from llm_service.security.jwt import Principal
    from llm_service.services import chat, conversations

    await configure(api)
    created = await conversation(api)
    user = Principal(user_id=1, role="CLIENT")
    prepared = await conversations.prepare_send(api.runtime, user, created["id"],
                                                conversations.Send("hello"))
    call = await chat.begin_chat(api.runtime, user=user, provider="openai",
                                 body=chat.ChatIn(message="hello"), prepared=prepared)
    await api.client.delete(f"/llm/conversations/{created['id']}", headers=api.auth(1))
    answer = await call.record(chat.VendorReply(text="hi", shown="hi", model="gpt-4o-mini",
                                                input_tokens=3, output_tokens=1))
    assert answer.id is None
    assert answer.warning == conversations.GONE
    assert answer.response == "hi"
    await api.runtime.background.wait_idle(10)
    assert await count(api, ChatMessage) == 0
