"""Branches and context of conversations (issue 15, items 2 and 5): edits and regenerations add
siblings, the active leaf is remembered and switched, the messages route gives the branch or the
tree, a fork copies a branch, and the context sent is the active branch fitted to the model's
window; on SQLite and PostgreSQL, through the real OpenAI SDK path against the fake vendor."""

from __future__ import annotations

from typing import Any

import pytest

from llm_service.services import budgets
from llm_service.services.conversations import DEFAULT_CONTEXT_WINDOW
from tests.api.conversation_helpers import branch, configure, conversation, say, sent_turns
from tests.conftest import Api, sse_events
from tests.fakes.vendor import FakeVendor

pytestmark = pytest.mark.usefixtures("quiet_titles")


@pytest.fixture
def quiet_titles(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """No title calls here (LLM_AUTO_TITLES=false): every vendor request a test sees is one
    of its own messages."""
    monkeypatch.setattr(api.runtime.settings, "auto_titles", False)


def echo(text: str) -> str:
    return f"Echo from openai gpt-4o-mini: {text}"


def contents(view: dict[str, Any]) -> list[str]:
    return [m["content"] for m in view["messages"]]


async def started(api: Api) -> int:
    await configure(api)
    created = await conversation(api)
    await say(api, created["id"], "one")
    await say(api, created["id"], "two")
    return int(created["id"])


async def test_each_message_follows_the_last_reply_and_gets_the_branch_as_context(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    cid = await started(api)
    answer = await say(api, cid, "three")
    assert sent_turns(fake_vendor.requests[-1]) == [
        ("user", "one"), ("assistant", echo("one")), ("user", "two"), ("assistant", echo("two")),
        ("user", "three")]
    view = await branch(api, cid)
    assert contents(view) == ["one", echo("one"), "two", echo("two"), "three", echo("three")]
    assert view["activeLeafId"] == answer["id"] == view["messages"][-1]["id"]
    assert [m["parentId"] for m in view["messages"]] == [
        None, *[m["id"] for m in view["messages"][:-1]]]
    assert answer["conversationId"] == cid and answer["parentId"] == view["messages"][-2]["id"]


async def test_editing_a_message_adds_a_sibling_and_keeps_the_old_one(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    cid = await started(api)
    old = await branch(api, cid)
    two = old["messages"][2]
    edited = await say(api, cid, "two, edited", editOf=two["id"])
    assert sent_turns(fake_vendor.requests[-1]) == [
        ("user", "one"), ("assistant", echo("one")), ("user", "two, edited")]
    view = await branch(api, cid)
    assert contents(view) == ["one", echo("one"), "two, edited", echo("two, edited")]
    assert view["messages"][2]["siblingIds"] == [two["id"], edited["parentId"]]
    assert view["messages"][2]["parentId"] == two["parentId"]
    tree = await branch(api, cid, view="tree")
    assert contents(tree) == ["one", echo("one"), "two", echo("two"), "two, edited",
                              echo("two, edited")]


async def test_editing_the_first_message_starts_a_second_root(api: Api) -> None:
    cid = await started(api)
    first = (await branch(api, cid))["messages"][0]
    await say(api, cid, "one, again", editOf=first["id"])
    view = await branch(api, cid)
    assert contents(view) == ["one, again", echo("one, again")]
    assert view["messages"][0]["parentId"] is None
    assert len(view["messages"][0]["siblingIds"]) == 2


async def test_regenerating_a_reply_adds_a_sibling_reply_without_storing_the_message_again(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    cid = await started(api)
    old = await branch(api, cid)
    reply = old["messages"][3]
    regenerated = await api.client.post(
        f"/llm/conversations/{cid}/messages/{reply['id']}/regenerate", headers=api.auth(1))
    assert regenerated.status_code == 200, regenerated.text
    assert sent_turns(fake_vendor.requests[-1]) == [
        ("user", "one"), ("assistant", echo("one")), ("user", "two")]
    view = await branch(api, cid)
    assert contents(view) == contents(old)
    assert view["messages"][3]["id"] == regenerated.json()["id"] != reply["id"]
    assert view["messages"][3]["siblingIds"] == [reply["id"], regenerated.json()["id"]]
    read = (await api.client.get(f"/llm/conversations/{cid}", headers=api.auth(1))).json()
    assert read["messageCount"] == 5


async def test_regenerating_with_a_user_message_answers_it_again(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    cid = await started(api)
    two = (await branch(api, cid))["messages"][2]
    response = await api.client.post(
        f"/llm/conversations/{cid}/messages/{two['id']}/regenerate", json={},
        headers=api.auth(1))
    assert response.status_code == 200 and response.json()["parentId"] == two["id"]
    assert sent_turns(fake_vendor.requests[-1])[-1] == ("user", "two")


async def test_a_regeneration_streams_like_a_chat(api: Api) -> None:
    cid = await started(api)
    reply = (await branch(api, cid))["messages"][3]
    response = await api.client.post(
        f"/llm/conversations/{cid}/messages/{reply['id']}/regenerate/stream",
        headers=api.auth(1))
    events = sse_events(response.text)
    assert response.status_code == 200
    assert "".join(data["text"] for name, data in events if name == "delta") == echo("two")
    done = events[-1]
    assert done[0] == "done" and done[1]["conversationId"] == cid
    assert (await branch(api, cid))["messages"][3]["id"] == done[1]["id"]


async def test_a_message_sent_by_stream_is_stored_in_the_branch(api: Api) -> None:
    cid = await started(api)
    response = await api.client.post(f"/llm/conversations/{cid}/messages/stream",
                                     json={"message": "three"}, headers=api.auth(1))
    done = sse_events(response.text)[-1]
    assert done[0] == "done" and done[1]["response"] == echo("three")
    assert contents(await branch(api, cid))[-2:] == ["three", echo("three")]


async def test_switching_branches_is_remembered_and_the_next_message_follows_it(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    cid = await started(api)
    two = (await branch(api, cid))["messages"][2]
    await say(api, cid, "two, edited", editOf=two["id"])
    switched = await api.client.patch(f"/llm/conversations/{cid}",
                                      json={"activeMessageId": two["id"]}, headers=api.auth(1))
    assert switched.status_code == 200
    view = await branch(api, cid)
    assert contents(view) == ["one", echo("one"), "two", echo("two")]
    assert switched.json()["activeLeafId"] == view["messages"][-1]["id"]
    await say(api, cid, "three")
    assert sent_turns(fake_vendor.requests[-1])[-3:] == [
        ("user", "two"), ("assistant", echo("two")), ("user", "three")]


async def test_parent_id_puts_a_message_after_an_earlier_reply(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    cid = await started(api)
    first_reply = (await branch(api, cid))["messages"][1]
    await say(api, cid, "instead", parentId=first_reply["id"])
    assert sent_turns(fake_vendor.requests[-1]) == [
        ("user", "one"), ("assistant", echo("one")), ("user", "instead")]


async def test_places_that_are_no_message_of_the_conversation_are_refused(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    cid = await started(api)
    other = await conversation(api)
    await say(api, other["id"], "elsewhere")
    elsewhere = (await branch(api, other["id"]))["messages"][0]["id"]
    mine = (await branch(api, cid))["messages"]
    calls = len(fake_vendor.requests)
    url = f"/llm/conversations/{cid}/messages"
    for body, status, field in [
        ({"message": "x", "parentId": elsewhere}, 404, None),
        ({"message": "x", "editOf": elsewhere}, 404, None),
        ({"message": "x", "parentId": mine[0]["id"]}, 422, "parentId"),
        ({"message": "x", "editOf": mine[1]["id"]}, 422, "editOf"),
        ({"message": "x", "parentId": 1, "editOf": 1}, 422, "body"),
        ({"message": "x", "parentId": 2**63}, 422, "parentId"),
        ({"message": "x", "editOf": "3"}, 422, "editOf"),
    ]:
        response = await api.client.post(url, json=body, headers=api.auth(1))
        assert response.status_code == status, (body, response.text)
        if field:
            assert response.json()["details"][0]["field"] == field, body
    for message in (elsewhere, "x", 2**64):
        response = await api.client.post(
            f"/llm/conversations/{cid}/messages/{message}/regenerate", headers=api.auth(1))
        assert response.status_code == 404, message
    switched = await api.client.patch(f"/llm/conversations/{cid}",
                                      json={"activeMessageId": elsewhere}, headers=api.auth(1))
    assert switched.status_code == 404
    assert len(fake_vendor.requests) == calls


async def test_a_message_may_go_to_another_configured_provider_and_model(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    cid = await started(api)
    await configure(api, "claude")
    answer = await say(api, cid, "three", provider="claude", model="claude-haiku-5-5")
    claude_call = fake_vendor.requests_for("claude")[-1]
    assert claude_call.body["model"] == "claude-haiku-5-5"
    assert sent_turns(claude_call)[-1] == ("user", "three")
    assert ("assistant", echo("two")) in sent_turns(claude_call)
    assert answer["model"] == "claude-haiku-5-5"
    view = await branch(api, cid)
    assert [m["provider"] for m in view["messages"][-2:]] == ["claude", "claude"]
    read = (await api.client.get(f"/llm/conversations/{cid}", headers=api.auth(1))).json()
    assert read["provider"] == "openai"
    await say(api, cid, "four")
    assert fake_vendor.requests[-1].provider == "openai"
    unconfigured = await api.client.post(f"/llm/conversations/{cid}/messages",
                                         json={"message": "x", "provider": "qwen"},
                                         headers=api.auth(1))
    assert unconfigured.status_code == 400
    assert unconfigured.json()["code"] == "provider_not_configured"


async def test_a_vendor_failure_stores_nothing_and_says_why(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    cid = await started(api)
    before = await branch(api, cid, view="tree")
    fake_vendor.set_behaviour("bad_request", provider="openai", times=1)
    failed = await api.client.post(f"/llm/conversations/{cid}/messages",
                                   json={"message": "three"}, headers=api.auth(1))
    assert failed.status_code == 400 and failed.json()["code"] == "provider_bad_request"
    assert await branch(api, cid, view="tree") == before


async def test_a_fork_copies_the_branch_up_to_a_message(api: Api) -> None:
    cid = await started(api)
    await api.client.patch(f"/llm/conversations/{cid}", json={"systemPrompt": "Be brief."},
                           headers=api.auth(1))
    upto = (await branch(api, cid))["messages"][1]
    usage = (await api.client.get("/llm/usage", headers=api.auth(1))).json()["total"]
    response = await api.client.post(f"/llm/conversations/{cid}/fork",
                                     json={"messageId": upto["id"], "title": "Plan B"},
                                     headers=api.auth(1))
    assert response.status_code == 201, response.text
    fork = response.json()
    assert (fork["title"], fork["titleSource"], fork["systemPrompt"], fork["messageCount"]) == (
        "Plan B", "user", "Be brief.", 2)
    copied = await branch(api, fork["id"])
    assert contents(copied) == ["one", echo("one")]
    assert copied["messages"][0]["id"] != (await branch(api, cid))["messages"][0]["id"]
    assert (await api.client.get("/llm/usage", headers=api.auth(1))).json()["total"] == usage
    assert contents(await branch(api, cid)) == ["one", echo("one"), "two", echo("two")]
    await say(api, fork["id"], "onward")
    assert contents(await branch(api, fork["id"]))[-2:] == ["onward", echo("onward")]


def words(count: int, tag: str) -> str:
    """`count` ASCII words: about count * 1.5 estimated tokens."""
    return " ".join(f"{tag}{i:04d}" for i in range(count))


async def test_the_context_is_the_newest_of_the_branch_that_fits_the_models_window(
    api: Api, fake_vendor: FakeVendor,
) -> None:
    # An id the catalogue does not know: DEFAULT_CONTEXT_WINDOW tokens; maxTokens takes most.
    await configure(api, model="house-model-1", maxTokens=DEFAULT_CONTEXT_WINDOW - 6000)
    system = words(400, "s")
    created = await conversation(api, systemPrompt=system)
    for n in range(6):
        await say(api, created["id"], words(300, f"m{n}"))
    preview = (await api.client.get(f"/llm/conversations/{created['id']}/preview",
                                    headers=api.auth(1))).json()
    await say(api, created["id"], "last")
    sent = sent_turns(fake_vendor.requests[-1])
    context = sent[:-1] if sent[0][0] != "system" else sent[1:-1]
    assert sent[-1] == ("user", "last")
    room = 6000 - budgets.estimate_input_tokens([system]) - budgets.estimate_input_tokens(
        ["last"])
    used = budgets.estimate_input_tokens([c for _, c in context])
    assert used <= room
    assert context[0][0] == "user"  # never starts with a reply
    branch_messages = 12
    assert 0 < len(context) < branch_messages
    # The next older message of the branch (and its reply) would not have fitted.
    everything = [(m["role"], m["content"]) for m in (await branch(api, created["id"]))[
        "messages"][:-2]]
    older = everything[: branch_messages - len(context)]
    assert everything[branch_messages - len(context):] == context
    assert used + budgets.estimate_input_tokens([older[-1][1]]) > room or older[-1][0] == \
        "assistant"
    assert preview["droppedMessages"] == branch_messages - len(preview["messages"])
    assert preview["contextWindow"] == DEFAULT_CONTEXT_WINDOW
    assert preview["system"] == system and preview["systemSource"] == "conversation"


async def test_the_context_is_bounded_by_tokens_not_by_a_count(api: Api,
                                                               fake_vendor: FakeVendor) -> None:
    await configure(api)  # gpt-4o-mini: a 128,000-token window
    created = await conversation(api)
    for n in range(12):  # more than LLM_CONTEXT_MESSAGES (20) messages of the default thread
        await say(api, created["id"], f"message {n}")
    await say(api, created["id"], "last")
    assert len(sent_turns(fake_vendor.requests[-1])) == 25
