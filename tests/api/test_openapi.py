"""The OpenAPI document at /openapi.json (rendered at /docs) describes every route."""

from __future__ import annotations

from tests.conftest import Api


async def test_docs_page_is_served(api: Api) -> None:
    response = await api.client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


async def test_every_route_is_described_with_its_answers(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    expected = {
        ("/llm/configs", "get"): {"200", "401", "503"},
        ("/llm/config/{provider}", "post"): {"200", "401", "404", "413", "422", "503"},
        ("/llm/config/{provider}", "delete"): {"200", "401", "404", "503"},
        ("/llm/history/{provider}", "get"): {"200", "401", "404", "422", "503"},
        ("/llm/history/{provider}", "delete"): {"200", "401", "404", "503"},
        ("/llm/chat/{provider}", "post"): {
            "200", "400", "401", "404", "413", "422", "429", "502", "503", "504"},
        ("/llm/chat/{provider}/stream", "post"): {
            "200", "400", "401", "404", "413", "422", "429", "502", "503", "504"},
        ("/llm/conversations", "get"): {"200", "401", "422", "503"},
        ("/llm/conversations", "post"): {"201", "400", "401", "413", "422", "503"},
        ("/llm/conversations/{conversationId}", "get"): {"200", "401", "404", "503"},
        ("/llm/conversations/{conversationId}", "patch"): {"200", "401", "404", "422", "503"},
        ("/llm/conversations/{conversationId}", "delete"): {"200", "401", "404", "503"},
        ("/llm/conversations/{conversationId}/messages", "get"): {"200", "401", "404", "503"},
        ("/llm/conversations/{conversationId}/preview", "get"): {"200", "400", "401", "404",
                                                                 "503"},
        ("/llm/conversations/{conversationId}/fork", "post"): {"201", "401", "404", "413",
                                                              "422", "503"},
        **{(path, "post"): {"200", "400", "401", "404", "413", "422", "429", "502", "503", "504"}
           for path in ("/llm/conversations/{conversationId}/messages",
                        "/llm/conversations/{conversationId}/messages/stream",
                        "/llm/conversations/{conversationId}/messages/{messageId}/regenerate",
                        "/llm/conversations/{conversationId}/messages/{messageId}/regenerate"
                        "/stream")},
        ("/health", "get"): {"200"},
        ("/health/ready", "get"): {"200", "503"},
    }
    for (path, method), statuses in expected.items():
        assert statuses <= set(paths[path][method]["responses"]), (path, method)


async def test_config_body_is_documented_with_examples_and_bounds(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    body = spec["paths"]["/llm/config/{provider}"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ConfigIn"}
    schema = spec["components"]["schemas"]["ConfigIn"]
    assert set(schema["properties"]) == {"apiKey", "model", "temperature", "maxTokens", "region",
                                         "systemPrompt"}
    assert schema["examples"][0]["model"] == "gpt-4o"
    assert schema["properties"]["maxTokens"]["maximum"] == 32000
    prompt = schema["properties"]["systemPrompt"]
    assert (prompt["type"], prompt["maxLength"], prompt["pattern"]) == ("string", 8000,
                                                                       r"^[^\x00]*$")
    assert "LLM_MAX_SYSTEM_PROMPT_CHARS" in prompt["description"]
    assert "null" not in str(schema["properties"])  # may be left out, never null


async def test_history_paging_parameters_are_documented(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    params = {p["name"]: p for p in spec["paths"]["/llm/history/{provider}"]["get"]["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 200
    assert params["limit"]["schema"]["default"] == 50
    assert params["offset"]["schema"]["minimum"] == 0


async def test_chat_body_schema_resolves_its_references(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    chat = schemas["ChatIn"]
    assert chat["required"] == ["message"]
    item_ref = chat["properties"]["history"]["anyOf"][0]["items"]["$ref"]
    assert item_ref == "#/components/schemas/ChatHistoryItem"
    assert set(schemas["ChatHistoryItem"]["properties"]) == {"role", "content"}
    assert "$defs" not in str(spec)


async def test_conversation_bodies_are_documented_with_examples(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for name in ("ConversationIn", "ConversationPatch", "ConversationMessageIn", "RegenerateIn",
                 "ForkIn"):
        assert schemas[name]["examples"], name
    send = schemas["ConversationMessageIn"]
    assert send["required"] == ["message"]
    assert set(send["properties"]) == {"message", "parentId", "editOf", "provider", "model"}
    assert send["not"] == {"required": ["parentId", "editOf"]}
    assert schemas["ConversationIn"]["properties"]["provider"]["enum"] == [
        "openai", "gemini", "claude", "qwen", "huggingface"]
    assert schemas["ConversationIn"]["properties"]["title"]["maxLength"] == 200
    for path in ("/llm/conversations/{conversationId}/messages/stream",
                 "/llm/conversations/{conversationId}/messages/{messageId}/regenerate/stream"):
        assert "text/event-stream" in spec["paths"][path]["post"]["responses"]["200"]["content"]
    listing = {p["name"]: p for p in spec["paths"]["/llm/conversations"]["get"]["parameters"]}
    assert set(listing) == {"provider", "pinned", "archived", "limit", "cursor"}
    assert listing["limit"]["schema"]["maximum"] == 200
