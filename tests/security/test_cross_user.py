"""Every route and method with another user's token (issue 5, item 5; CONTRACT.md: "asking for
another user's data must be indistinguishable from asking for nothing").

User 1 has a configuration and a history with every provider. User 2 then drives every `/llm`
route and method, and a brand-new user 3 drives the very same sequence: their answers must be the
same (status, content type, body; ids, timestamps and request ids aside, which only say *when*),
the vendor must see only user 2's own key and context, and user 1's rows, read with raw SQL, must
be identical before and after.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx2
from sqlalchemy import text

from llm_service.db.models import Base
from llm_service.providers.registry import provider_ids
from tests.conftest import Api
from tests.fakes.vendor import FakeVendor

PROVIDERS = provider_ids()
OWNER, INTRUDER, NEWCOMER = 1, 2, 3
OWNER_MODEL = "owner-model-1"
# Every table with a user_id column holds rows of one user (configs, history, budgets...).
USER_TABLES = sorted(t.name for t in Base.metadata.tables.values() if "user_id" in t.columns)

Step = tuple[str, str, str | None, dict[str, Any]]  # method, route, provider, request options


def key_of(user: int, provider: str) -> str:
    if user == OWNER:
        return f"sk-OWNER-secret-key-{provider}-7777"
    return f"sk-user{user}-{provider}-k"


async def seed_owner(api: Api) -> dict[str, int]:
    """User 1's configurations, histories and a titled conversation; its ids."""
    auth = api.auth(OWNER)
    for provider in PROVIDERS:
        saved = await api.client.post(
            f"/llm/config/{provider}",
            json={"apiKey": key_of(OWNER, provider), "model": OWNER_MODEL, "temperature": 1.25,
                  "maxTokens": 777},
            headers=auth,
        )
        assert saved.status_code == 200, saved.text
        for message in (f"owner secret one {provider}", f"owner secret two {provider}"):
            sent = await api.client.post(
                f"/llm/chat/{provider}", json={"message": message}, headers=auth
            )
            assert sent.status_code == 200, sent.text
    created = await api.client.post(
        "/llm/conversations", json={"provider": "openai", "systemPrompt": "owner secret prompt"},
        headers=auth)
    assert created.status_code == 201, created.text
    sent = await api.client.post(f"/llm/conversations/{created.json()['id']}/messages",
                                 json={"message": "owner secret conversation"}, headers=auth)
    assert sent.status_code == 200, sent.text
    await api.runtime.background.wait_idle(10)  # the title is made
    return {"victim": created.json()["id"], "victim_message": sent.json()["id"]}


async def owner_rows(api: Api) -> dict[str, list[tuple[Any, ...]]]:
    """User 1's rows of every table, every column, as the database driver returns them."""
    async with api.runtime.sessions() as session:
        return {
            table: [
                tuple(row)
                for row in await session.execute(
                    text(f"SELECT * FROM {table} WHERE user_id = :user ORDER BY 1, 2"),
                    {"user": OWNER},
                )
            ]
            for table in USER_TABLES
        }


def steps_for(user: int) -> list[Step]:
    """Every route and method, in an order that goes from nothing to a configuration and a
    history of the user's own and back. Bodies and queries that name user 1 must be ignored."""
    usage: list[Step] = [
        ("GET", "/llm/usage", None, {}),
        ("GET", "/llm/usage", None, {"params": {"groupBy": "provider", "userId": OWNER}}),
        ("GET", "/llm/usage/limits", None, {"params": {"userId": OWNER}}),
        ("GET", "/llm/admin/usage", None, {}),
    ]
    steps: list[Step] = [("GET", "/llm/configs", None, {}), *usage,
                         ("GET", "/llm/conversations", None, {}),
                         ("POST", "/llm/conversations", None,
                          {"json": {"provider": "openai", "userId": OWNER}}),
                         *owner_conversation_steps("victim_message")]
    for p in PROVIDERS:
        steps += [
            ("GET", "/llm/history/{provider}", p, {}),
            ("GET", "/llm/history/{provider}", p,
             {"params": {"limit": 1, "offset": 1, "userId": OWNER, "user_id": OWNER}}),
            ("POST", "/llm/chat/{provider}", p, {"json": {"message": "hello?", "userId": OWNER}}),
            ("POST", "/llm/chat/{provider}/stream", p, {"json": {"message": "hello?"}}),
            ("DELETE", "/llm/config/{provider}", p, {}),
            ("POST", "/llm/config/{provider}/test", p, {"json": {"userId": OWNER}}),
            ("DELETE", "/llm/history/{provider}", p, {"params": {"userId": OWNER}}),
            # An update of nothing: user 1's row with this provider must not be the one updated.
            ("POST", "/llm/config/{provider}", p,
             {"json": {"model": "intruder-model", "userId": OWNER}}),
            ("POST", "/llm/config/{provider}", p,
             {"json": {"apiKey": key_of(user, p), "userId": OWNER, "user_id": OWNER}}),
            ("POST", "/llm/config/{provider}", p, {"json": {"model": "own-model", "maxTokens": 5}}),
            ("POST", "/llm/config/{provider}", p, {"json": {"temperature": 9, "userId": OWNER}}),
            ("POST", "/llm/config/{provider}/test", p, {"json": {"userId": OWNER}}),
            ("GET", "/llm/models/{provider}", p, {"params": {"userId": OWNER}}),
            ("POST", "/llm/chat/{provider}", p, {"json": {"message": "my own question"}}),
            ("POST", "/llm/chat/{provider}/stream", p, {"json": {"message": "my own stream"}}),
            ("GET", "/llm/history/{provider}", p, {}),
        ]
    steps += [("GET", "/llm/configs", None, {}), *usage, *conversation_steps()]
    for p in PROVIDERS:
        steps += [
            ("DELETE", "/llm/history/{provider}", p, {}),
            ("GET", "/llm/history/{provider}", p, {}),
            ("DELETE", "/llm/config/{provider}", p, {}),
            ("DELETE", "/llm/config/{provider}", p, {}),
        ]
    steps += [("GET", "/llm/configs", None, {}), *usage]
    return steps


ONE = "/llm/conversations/{conversationId}"
REGENERATE = ONE + "/messages/{messageId}/regenerate"


def owner_conversation_steps(message: str) -> list[Step]:
    """Every conversation route on user 1's conversation (and with `message`, a message id of
    user 1's or of the caller's own): each must be the 404 of a missing one."""
    at_owner = {"conversationId": "victim", "messageId": message}
    return [
        ("GET", ONE, None, {"ids": at_owner}),
        ("PATCH", ONE, None, {"ids": at_owner, "json": {"title": "mine", "pinned": True}}),
        ("GET", ONE + "/messages", None, {"ids": at_owner, "params": {"view": "tree"}}),
        ("GET", ONE + "/preview", None, {"ids": at_owner}),
        ("POST", ONE + "/fork", None, {"ids": at_owner, "json": {}}),
        ("POST", ONE + "/messages", None, {"ids": at_owner, "json": {"message": "hello?"}}),
        ("POST", ONE + "/messages/stream", None, {"ids": at_owner,
                                                  "json": {"message": "hello?"}}),
        ("POST", REGENERATE, None, {"ids": at_owner, "json": {}}),
        ("POST", REGENERATE + "/stream", None, {"ids": at_owner}),
        ("DELETE", ONE, None, {"ids": at_owner}),
    ]


def conversation_steps() -> list[Step]:
    """The caller's own conversation, made, used and deleted, with user 1's ids in between."""
    own = {"conversationId": "own", "messageId": "own_message"}
    return [
        ("POST", "/llm/conversations", None,
         {"json": {"provider": "openai", "userId": OWNER}, "save": "own"}),
        ("GET", "/llm/conversations", None, {"params": {"provider": "openai", "userId": OWNER}}),
        ("GET", ONE, None, {"ids": own}),
        ("PATCH", ONE, None, {"ids": own, "json": {"pinned": True, "systemPrompt": "mine"}}),
        ("POST", ONE + "/messages", None,
         {"ids": own, "json": {"message": "my own conversation message"}, "save": "own_message"}),
        ("POST", ONE + "/messages/stream", None,
         {"ids": own, "json": {"message": "my own streamed conversation message"}}),
        ("POST", REGENERATE, None, {"ids": own, "json": {"userId": OWNER}}),
        ("POST", REGENERATE + "/stream", None, {"ids": own}),
        ("GET", ONE + "/messages", None, {"ids": own}),
        ("GET", ONE + "/messages", None, {"ids": own, "params": {"view": "tree"}}),
        ("GET", ONE + "/preview", None, {"ids": own}),
        ("POST", ONE + "/fork", None, {"ids": own, "json": {}, "save": "fork"}),
        ("GET", "/llm/conversations", None, {}),
        ("DELETE", ONE, None, {"ids": {"conversationId": "fork"}}),
        # User 1's message in the caller's conversation, the caller's in user 1's.
        ("POST", REGENERATE, None, {"ids": {"conversationId": "own",
                                            "messageId": "victim_message"}}),
        ("POST", ONE + "/messages", None, {"ids": own, "json": {
            "message": "hello?", "parentId": "<victim_message>"}}),
        *owner_conversation_steps("own_message"),
        ("DELETE", ONE, None, {"ids": own}),
        ("GET", ONE, None, {"ids": own}),
    ]


# What differs between any two users however alike: ids, timestamps, the request id, cursors.
WHEN = {"id", "createdAt", "updatedAt", "requestId", "activeLeafId", "lastMessageAt",
        "conversationId", "parentId", "siblingIds", "nextCursor"}


def comparable(value: Any) -> Any:
    """A body without what differs between any two users however alike: ids (one sequence for
    everyone), timestamps and the request id. Every message, key hint and figure stays."""
    if isinstance(value, dict):
        return {k: "<when>" if k in WHEN else comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def sse_events(body: str) -> list[Any]:
    """The events of a stream, the deltas joined (how a reply is cut may vary), keep-alive
    comments dropped."""
    events: list[Any] = []
    deltas: list[str] = []
    for block in body.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":")
        )
        if not fields:
            continue
        data = json.loads(fields["data"])
        if fields.get("event") == "delta":
            deltas.append(data["text"])
        else:
            events.append((fields.get("event"), comparable(data)))
    return ["".join(deltas), *events]


def answer(response: httpx2.Response) -> Any:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return sse_events(response.text)
    return comparable(response.json())


def filled(value: Any, ids: dict[str, int]) -> Any:
    """`"<name>"` in a body replaced by that saved id."""
    if isinstance(value, dict):
        return {k: filled(v, ids) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
        return ids[value[1:-1]]
    return value


async def drive(api: Api, user: int, ids: dict[str, int]) -> list[tuple[str, int, str | None,
                                                                      Any]]:
    """Every step as `user`; `ids` holds user 1's (`victim`, `victim_message`) and gets the
    caller's own as the steps make them (`save`). Background titles are awaited after each
    step, so both users see the same."""
    ids = dict(ids)
    answers = []
    for method, route, provider, options in steps_for(user):
        options = dict(options)
        save, path_ids = options.pop("save", None), options.pop("ids", {})
        path = route.replace("{provider}", provider or "")
        for name, which in path_ids.items():
            if "{" + name + "}" in path:
                path = path.replace("{" + name + "}", str(ids[which]))
        if "json" in options:
            options["json"] = filled(options["json"], ids)
        response = await api.client.request(method, path, headers=api.auth(user), **options)
        await api.runtime.background.wait_idle(10)
        assert response.status_code < 500, (method, path, response.text)
        if save:
            assert response.status_code in (200, 201), (method, path, response.text)
            ids[save] = response.json()["id"]
        step = f"{method} {route.replace('{provider}', provider or '')} {path_ids} {options}"
        step = step.replace(f"sk-user{user}-", "sk-userN-")
        body = repr(answer(response)).replace(f"sk-user{user}-", "sk-userN-")
        answers.append((step, response.status_code, response.headers.get("content-type"), body))
    return answers


def test_the_sequence_covers_every_llm_operation_of_the_schema(api: Api) -> None:
    """A route added later must be added here too."""
    schema = api.app.openapi()["paths"]
    operations = {
        (method.upper(), path)
        for path, methods in schema.items()
        if path.startswith("/llm/")
        for method in methods
    }
    covered = {(method, route) for method, route, _, _ in steps_for(INTRUDER)}
    assert operations - covered == set()


async def test_another_user_sees_changes_and_learns_nothing_of_user_ones_rows(
    api: Api, fake_vendor: FakeVendor
) -> None:
    ids = await seed_owner(api)
    # Reading the limits makes the month's budget row: read first, so it is in the snapshot.
    owner_view = [
        (await api.client.get(path, headers=api.auth(OWNER))).json()
        for path in ["/llm/configs", "/llm/usage", "/llm/usage/limits"]
        + [f"/llm/history/{p}" for p in PROVIDERS]
    ]
    before = await owner_rows(api)
    assert len(before["llm_configs"]) == len(PROVIDERS)
    # Two exchanges per provider; the conversation's message, reply and title call.
    assert len(before["llm_chat_history"]) == 4 * len(PROVIDERS) + 3
    assert len(before["llm_conversations"]) == 1
    assert len(before["llm_budget_usage"]) == 1
    fake_vendor.reset()

    intruder = await drive(api, INTRUDER, ids)
    intruder_calls = fake_vendor.requests
    fake_vendor.reset()
    newcomer = await drive(api, NEWCOMER, ids)

    # The same answers, step by step, as a user who never met user 1.
    assert intruder == newcomer
    statuses = {status for _, status, _, _ in intruder}
    # Every kind of answer was reached.
    assert statuses == {200, 201, 400, 403, 404, 422}, statuses

    # Nothing of user 1 in any answer to user 2, nor in what the vendor got for user 2.
    # The model lists carry the public catalogue (whose prices may read "1.25"): the markers
    # are looked for in every other answer.
    private = [a for a in intruder if not a[0].startswith("GET /llm/models/")]
    for marker in ("OWNER", "owner", "1.25", "777"):
        assert marker not in repr(private), marker
    assert all("owner" not in a[3].lower() for a in intruder if a not in private)
    for marker in ("OWNER", "owner"):  # user 1's keys, messages and model all carry one
        assert marker not in repr([(r.headers, r.body) for r in intruder_calls]), marker
    # One chat, one stream, one key check and one model list (list-models calls) each; and in
    # the conversation a message, a stream, two regenerations and the title.
    assert len(intruder_calls) == 4 * len(PROVIDERS) + 5
    for record in intruder_calls:
        assert key_of(INTRUDER, record.provider) in repr(record.headers)
        if record.method == "POST":  # the key check's list-models call has no body
            assert re.search(r"my own (question|stream|conversation)", repr(record.body))

    # User 1's rows are identical, and user 1 still sees exactly what it saw.
    assert await owner_rows(api) == before
    assert [
        (await api.client.get(path, headers=api.auth(OWNER))).json()
        for path in ["/llm/configs", "/llm/usage", "/llm/usage/limits"]
        + [f"/llm/history/{p}" for p in PROVIDERS]
    ] == owner_view


async def test_stored_context_of_a_chat_is_the_callers_own(
    api: Api, fake_vendor: FakeVendor
) -> None:
    """A chat without `history` sends the caller's stored messages as context: user 2's second
    chat carries user 2's first exchange and nothing of user 1's."""
    await seed_owner(api)
    before = await owner_rows(api)
    auth = api.auth(INTRUDER)
    for provider in PROVIDERS:
        await api.client.post(
            f"/llm/config/{provider}", json={"apiKey": key_of(INTRUDER, provider)}, headers=auth
        )
        for message in ("first of two", "second of two"):
            sent = await api.client.post(
                f"/llm/chat/{provider}", json={"message": message}, headers=auth
            )
            assert sent.status_code == 200, sent.text
        body = repr(fake_vendor.requests_for(provider)[-1].body)
        assert "first of two" in body and "second of two" in body
        assert "owner secret" not in body
        history = (await api.client.get(f"/llm/history/{provider}", headers=auth)).json()
        assert history["total"] == 4
    assert await owner_rows(api) == before
