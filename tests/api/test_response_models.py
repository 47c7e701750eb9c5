"""The OpenAPI models are the truth (issue 11, item 5): every 200 JSON body of every route, and the
stream's `done` event, validates against the model the route declares, with no undeclared field
(`additionalProperties: false` is added to every object for the check)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest

from tests.conftest import Api

USER, ADMIN = 8101, 8102


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: _strict(value) for key, value in node.items()}
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


def _declared(spec: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(method, path) → the component its 200 JSON answer declares."""
    declared = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("responses", {}).get("200", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref")
            if ref:
                declared[(method.upper(), path)] = ref
    return declared


class Checker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.components = _strict(spec["components"])
        self.declared = _declared(spec)
        self.checked: set[tuple[str, str]] = set()

    def check(self, method: str, path: str, body: Any) -> None:
        ref = self.declared[(method, path)]
        self.check_ref(ref, body)
        self.checked.add((method, path))

    def check_ref(self, ref: str, body: Any) -> None:
        validator = jsonschema_rs.Draft202012Validator(
            {"$ref": ref, "components": self.components}
        )
        errors = [error.message for error in validator.iter_errors(body)]
        assert errors == [], f"{ref}: {errors} in {body}"


@pytest.mark.parametrize("budgeted", [False, True], ids=["no-budget", "budget"])
async def test_every_200_body_matches_its_declared_model(
    api: Api, make_api: Any, budgeted: bool
) -> None:
    budgets = {"LLM_BUDGET_TOKENS_CLIENT": 100000, "LLM_BUDGET_COST_USD_CLIENT": 5.0} \
        if budgeted else {}
    async with make_api(**budgets) as app:
        client = app.client
        spec = (await client.get("/openapi.json")).json()
        checker = Checker(spec)
        me, admin = app.auth(USER), app.auth(ADMIN, "ADMIN")

        async def call(method: str, path: str, url: str, **kwargs: Any) -> Any:
            response = await client.request(method, url, **kwargs)
            assert response.status_code == 200, response.text
            checker.check(method, path, response.json())
            return response.json()

        await call("GET", "/health", "/health")
        await call("GET", "/health/ready", "/health/ready")
        await call("POST", "/llm/config/{provider}", "/llm/config/openai", headers=me,
                   json={"apiKey": "sk-test-key-123456"})
        await call("GET", "/llm/configs", "/llm/configs", headers=me)
        await call("GET", "/llm/models/{provider}", "/llm/models/openai", headers=me)
        await call("POST", "/llm/config/{provider}/test", "/llm/config/openai/test", headers=me,
                   json={})
        answer = await call("POST", "/llm/chat/{provider}", "/llm/chat/openai", headers=me,
                            json={"message": "hello"})
        assert ("warning" in answer) is False
        streamed = await client.post("/llm/chat/openai/stream", headers=me,
                                     json={"message": "stream"})
        done = [json.loads(block.split("data: ", 1)[1]) for block in streamed.text.split("\n\n")
                if block.startswith("event: done")]
        assert len(done) == 1
        checker.check_ref(checker.declared[("POST", "/llm/chat/{provider}")], done[0])
        await call("GET", "/llm/history/{provider}", "/llm/history/openai", headers=me)
        await call("GET", "/llm/usage", "/llm/usage", headers=me)
        await call("GET", "/llm/usage/limits", "/llm/usage/limits", headers=me)
        await call("GET", "/llm/admin/usage", "/llm/admin/usage", headers=admin)
        await conversation_routes(client, checker, call, me)
        await call("DELETE", "/llm/history/{provider}", "/llm/history/openai", headers=me)
        await call("DELETE", "/llm/config/{provider}", "/llm/config/openai", headers=me)
        assert checker.checked == set(checker.declared)  # a new route needs a line here


ONE = "/llm/conversations/{conversationId}"


async def conversation_routes(client: Any, checker: Checker, call: Any,
                              me: dict[str, str]) -> None:
    """Every conversation route; the 201 answers (create, fork) and the streams' `done`
    checked against their models too."""
    created = await client.post("/llm/conversations", headers=me, json={"provider": "openai"})
    assert created.status_code == 201, created.text
    checker.check_ref("#/components/schemas/ConversationView", created.json())
    url = f"/llm/conversations/{created.json()['id']}"
    sent = await call("POST", ONE + "/messages", url + "/messages", headers=me,
                      json={"message": "hello"})
    await call("POST", ONE + "/messages/{messageId}/regenerate",
               f"{url}/messages/{sent['id']}/regenerate", headers=me, json={})
    for stream in (url + "/messages/stream", f"{url}/messages/{sent['id']}/regenerate/stream"):
        streamed = await client.post(stream, headers=me, json={"message": "stream"})
        done = [json.loads(block.split("data: ", 1)[1])
                for block in streamed.text.split("\n\n") if block.startswith("event: done")]
        assert len(done) == 1, streamed.text
        checker.check_ref("#/components/schemas/ChatOut", done[0])
    await call("GET", "/llm/conversations", "/llm/conversations", headers=me)
    await call("GET", ONE, url, headers=me)
    await call("PATCH", ONE, url, headers=me, json={"pinned": True, "systemPrompt": "Be brief."})
    await call("GET", ONE + "/messages", url + "/messages", headers=me)
    tree = await client.get(url + "/messages", params={"view": "tree"}, headers=me)
    checker.check_ref(checker.declared[("GET", ONE + "/messages")], tree.json())
    await call("GET", ONE + "/preview", url + "/preview", headers=me)
    forked = await client.post(url + "/fork", headers=me, json={})
    assert forked.status_code == 201, forked.text
    checker.check_ref("#/components/schemas/ConversationView", forked.json())
    await call("DELETE", ONE, url, headers=me)
