"""Conversation titles (issue 15, item 3): made in the background after the first exchange, on
the user's own key with the vendor's cheapest current model, in the conversation's language,
counted in usage; the first words of the first message when that fails or is turned off; never
replacing a title the user set. Deterministic: each test awaits the Runtime's background work
(bounded), never sleeps; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from llm_service.db.models import ChatMessage
from llm_service.services import titles
from tests.api.conversation_helpers import branch, configure, conversation, key_of, say
from tests.conftest import Api, AppFactory
from tests.fakes.vendor import FakeVendor

QUESTION = "Wie spät ist es in Berlin, wenn es in New York Mittag ist?"


async def settled(api: Api) -> None:
    await api.runtime.background.wait_idle(10)


async def read(api: Api, conversation_id: int, user: int = 1) -> dict[str, Any]:
    response = await api.client.get(f"/llm/conversations/{conversation_id}",
                                    headers=api.auth(user))
    return response.json()  # type: ignore[no-any-return]


async def test_the_first_exchange_is_titled_on_the_users_key_with_the_cheapest_model(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    await configure(api)
    created = await conversation(api)
    await say(api, created["id"], QUESTION)
    await settled(api)
    title_call = fake_vendor.requests_for("openai")[-1]
    assert title_call.body["model"] == api.runtime.catalog.cheapest_model("openai")
    assert title_call.headers["authorization"] == f"Bearer {key_of(1, 'openai')}"
    user_turns = [m for m in title_call.body["messages"] if m["role"] == "user"]
    assert user_turns == [{"role": "user", "content":
                           f"{QUESTION}\n\n---\nEcho from openai gpt-4o-mini: {QUESTION}"}]
    conv = await read(api, created["id"])
    # The fake echoes the turn; the title is its first line, cleaned and cut at a word.
    assert conv["title"] == ("Echo from openai gpt-6-luna: Wie spät ist es in Berlin, wenn es in "
                             "New York…")
    assert conv["titleSource"] == "auto"


async def test_the_title_request_asks_for_the_conversations_language() -> None:
    job = titles.TitleJob(user=None, provider="openai", conversation_id=1,  # type: ignore[arg-type]
                          models=("m",), region=None, message=QUESTION, reply="Mittag",
                          api_key="sk-x")
    request = titles.title_request(job, "gpt-6-luna")
    assert request.system == titles.INSTRUCTIONS
    assert "same language as the first message" in request.system
    assert "never translate" in request.system
    assert [t.role for t in request.messages] == ["user"]
    assert "sk-x" not in repr(job)


async def test_only_the_first_exchange_is_titled(api: Api, fake_vendor: FakeVendor) -> None:
    await configure(api)
    created = await conversation(api)
    await say(api, created["id"], "first")
    await settled(api)
    await say(api, created["id"], "second")
    await settled(api)
    assert len(fake_vendor.requests_for("openai")) == 3  # two messages, one title


async def test_the_answer_never_waits_for_the_title(
    api: Api, monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()
    real = titles.make_title

    async def slow(runtime: Any, job: titles.TitleJob) -> None:
        await release.wait()
        await real(runtime, job)

    monkeypatch.setattr(titles, "make_title", slow)
    await configure(api)
    created = await conversation(api)
    try:
        answer = await say(api, created["id"], QUESTION)
        assert answer["response"].startswith("Echo from")
        assert len(api.runtime.background) == 1  # still waiting to be made
        during = await read(api, created["id"])
    finally:
        release.set()
    assert (during["title"], during["titleSource"]) == (
        "Wie spät ist es in Berlin, wenn es…", "fallback")
    await settled(api)
    assert (await read(api, created["id"]))["titleSource"] == "auto"


async def test_a_title_the_user_set_meanwhile_is_kept(
    api: Api, monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()
    real = titles.make_title

    async def slow(runtime: Any, job: titles.TitleJob) -> None:
        await release.wait()
        await real(runtime, job)

    monkeypatch.setattr(titles, "make_title", slow)
    await configure(api)
    created = await conversation(api)
    try:
        await say(api, created["id"], QUESTION)
        await api.client.patch(f"/llm/conversations/{created['id']}", json={"title": "Mine"},
                               headers=api.auth(1))
    finally:
        release.set()
    await settled(api)
    conv = await read(api, created["id"])
    assert (conv["title"], conv["titleSource"]) == ("Mine", "user")


async def test_a_title_given_at_creation_is_never_replaced(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    await configure(api)
    created = await conversation(api, title="Given")
    await say(api, created["id"], QUESTION)
    await settled(api)
    assert (await read(api, created["id"]))["title"] == "Given"
    assert len(fake_vendor.requests_for("openai")) == 1  # no title call at all


async def test_when_the_cheapest_model_is_refused_the_conversations_model_titles_it(
    api: Api, fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # o4-mini is retired (2026-10-23): the fake, as OpenAI, refuses it (404).
    monkeypatch.setattr(titles, "title_models", lambda runtime, provider, model: ("o4-mini", model))
    await configure(api)
    created = await conversation(api)
    await say(api, created["id"], QUESTION)
    await settled(api)
    models = [r.body["model"] for r in fake_vendor.requests_for("openai")]
    assert models == ["gpt-4o-mini", "o4-mini", "gpt-4o-mini"]
    conv = await read(api, created["id"])
    assert conv["titleSource"] == "auto"
    assert conv["title"].startswith("Echo from openai gpt-4o-mini: Wie spät")


async def test_when_titling_fails_the_title_is_the_first_words_of_the_first_message(
    api: Api, fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(titles, "title_models", lambda runtime, provider, model: ("o4-mini",))
    await configure(api)
    created = await conversation(api)
    await say(api, created["id"], QUESTION)
    await settled(api)
    conv = await read(api, created["id"])
    assert (conv["title"], conv["titleSource"]) == (
        "Wie spät ist es in Berlin, wenn es…", "fallback")
    usage = (await api.client.get("/llm/usage", headers=api.auth(1))).json()["total"]
    assert usage["requests"] == 1  # a refused title call cost nothing


async def test_a_first_reply_that_fails_leaves_no_title_and_the_next_exchange_makes_it(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    await configure(api)
    created = await conversation(api)
    fake_vendor.set_behaviour("bad_request", provider="openai", times=1)
    failed = await api.client.post(f"/llm/conversations/{created['id']}/messages",
                                   json={"message": QUESTION}, headers=api.auth(1))
    assert failed.status_code == 400
    await settled(api)
    assert (await read(api, created["id"]))["title"] is None  # nothing stored, nothing named
    await say(api, created["id"], QUESTION)
    await settled(api)
    assert (await read(api, created["id"]))["titleSource"] == "auto"


async def test_with_auto_titles_off_the_title_is_the_first_words(
    make_api: AppFactory, fake_vendor: FakeVendor,
) -> None:
    async with make_api(LLM_AUTO_TITLES="false") as api:
        await configure(api)
        created = await conversation(api)
        await say(api, created["id"], "Plan <script>x()</script> a   trip to Lisbon in May with "
                  "two children and a dog")
        await settled(api)
        conv = await read(api, created["id"])
    assert len(fake_vendor.requests) == 1
    assert (conv["title"], conv["titleSource"]) == ("Plan a trip to Lisbon in May with…",
                                                    "fallback")


async def test_the_title_call_is_counted_in_usage_but_is_no_message(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    await configure(api)
    created = await conversation(api)
    await say(api, created["id"], QUESTION)
    await settled(api)
    usage = (await api.client.get("/llm/usage", params={"groupBy": "model"},
                                  headers=api.auth(1))).json()
    by_model = {g["key"]: g for g in usage["groups"]}
    title_call = fake_vendor.requests_for("openai")[-1]
    assert set(by_model) == {"gpt-4o-mini", "gpt-6-luna"}
    assert by_model["gpt-6-luna"]["requests"] == 1
    assert by_model["gpt-6-luna"]["inputTokens"] > 0
    assert by_model["gpt-6-luna"]["costUsd"] is not None
    assert usage["total"]["requests"] == 2
    assert title_call.body["model"] == "gpt-6-luna"
    assert [m["role"] for m in (await branch(api, created["id"], view="tree"))["messages"]] == [
        "user", "assistant"]
    assert (await read(api, created["id"]))["messageCount"] == 2
    history = (await api.client.get("/llm/history/openai", headers=api.auth(1))).json()
    assert history == {"history": [], "total": 0}
    async with api.runtime.sessions() as session:
        rows = (await session.execute(
            select(ChatMessage.role, ChatMessage.content, ChatMessage.model)
            .where(ChatMessage.role == "title"))).all()
    assert [(r.role, r.model) for r in rows] == [("title", "gpt-6-luna")]
    assert rows[0].content == (await read(api, created["id"]))["title"]


async def test_a_title_call_counts_against_the_monthly_budget(
    make_api: AppFactory, fake_vendor: FakeVendor,
) -> None:
    async with make_api(LLM_BUDGET_TOKENS_CLIENT=1_000_000) as api:
        await configure(api)
        created = await conversation(api)
        answer = await say(api, created["id"], QUESTION)
        await settled(api)
        limits = (await api.client.get("/llm/usage/limits", headers=api.auth(1))).json()
        usage = (await api.client.get("/llm/usage", headers=api.auth(1))).json()["total"]
    assert limits["tokens"]["reserved"] == 0
    assert limits["tokens"]["used"] == usage["tokens"] > answer["tokensUsed"]
