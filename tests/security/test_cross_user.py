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


async def seed_owner(api: Api) -> None:
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
    steps: list[Step] = [("GET", "/llm/configs", None, {}), *usage]
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
    steps += [("GET", "/llm/configs", None, {}), *usage]
    for p in PROVIDERS:
        steps += [
            ("DELETE", "/llm/history/{provider}", p, {}),
            ("GET", "/llm/history/{provider}", p, {}),
            ("DELETE", "/llm/config/{provider}", p, {}),
            ("DELETE", "/llm/config/{provider}", p, {}),
        ]
    steps += [("GET", "/llm/configs", None, {}), *usage]
    return steps


WHEN = {"id", "createdAt", "updatedAt", "requestId"}


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


async def drive(api: Api, user: int) -> list[tuple[str, int, str | None, Any]]:
    answers = []
    for method, route, provider, options in steps_for(user):
        path = route.replace("{provider}", provider or "")
        response = await api.client.request(method, path, headers=api.auth(user), **options)
        assert response.status_code < 500, (method, path, response.text)
        step = f"{method} {path} {options}".replace(f"sk-user{user}-", "sk-userN-")
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
    await seed_owner(api)
    # Reading the limits makes the month's budget row: read first, so it is in the snapshot.
    owner_view = [
        (await api.client.get(path, headers=api.auth(OWNER))).json()
        for path in ["/llm/configs", "/llm/usage", "/llm/usage/limits"]
        + [f"/llm/history/{p}" for p in PROVIDERS]
    ]
    before = await owner_rows(api)
    assert len(before["llm_configs"]) == len(PROVIDERS)
    assert len(before["llm_chat_history"]) == 4 * len(PROVIDERS)
    assert len(before["llm_budget_usage"]) == 1
    fake_vendor.reset()

    intruder = await drive(api, INTRUDER)
    intruder_calls = fake_vendor.requests
    fake_vendor.reset()
    newcomer = await drive(api, NEWCOMER)

    # The same answers, step by step, as a user who never met user 1.
    assert intruder == newcomer
    statuses = {status for _, status, _, _ in intruder}
    assert statuses == {200, 400, 403, 404, 422}, statuses  # every kind of answer was reached

    # Nothing of user 1 in any answer to user 2, nor in what the vendor got for user 2.
    # The model lists carry the public catalogue (whose prices may read "1.25"): the markers
    # are looked for in every other answer.
    private = [a for a in intruder if not a[0].startswith("GET /llm/models/")]
    for marker in ("OWNER", "owner", "1.25", "777"):
        assert marker not in repr(private), marker
    assert all("owner" not in a[3].lower() for a in intruder if a not in private)
    for marker in ("OWNER", "owner"):  # user 1's keys, messages and model all carry one
        assert marker not in repr([(r.headers, r.body) for r in intruder_calls]), marker
    # One chat, one stream, one key check and one model list (list-models calls) each.
    assert len(intruder_calls) == 4 * len(PROVIDERS)
    for record in intruder_calls:
        assert key_of(INTRUDER, record.provider) in repr(record.headers)
        if record.method == "POST":  # the key check's list-models call has no body
            assert re.search(r"my own (question|stream)", repr(record.body))

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
