"""The fake vendor records every system prompt a request carries, and where (`system_prompts`),
and refuses one in a place the real vendor refuses it: Claude a `system` message in `messages`
or a `system` that is not text, Gemini a `contents` role other than user/model or a
`systemInstruction` that is not a Content. Driven through the official SDKs where they can send
the request, with plain httpx2 where they would refuse to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.fakes.vendor import FakeVendor, RecordedRequest

USER = {"role": "user", "content": "hello there"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeVendor]:
    with FakeVendor() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: FakeVendor) -> None:
    fake.reset()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def claude(fake: FakeVendor, http: httpx2.AsyncClient) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=fake.base_url("claude"),
                                    max_retries=0, http_client=http)


@pytest.fixture
async def gemini(fake: FakeVendor) -> AsyncIterator[genai.client.AsyncClient]:
    client = genai.Client(
        api_key="g-key-1",
        http_options=genai_types.HttpOptions(
            base_url=fake.base_url("gemini"), timeout=5000, httpx_async_client=httpx2.AsyncClient()
        ),
    )
    yield client.aio
    await client.aio.aclose()


def last(fake: FakeVendor, provider: str) -> RecordedRequest:
    return fake.requests_for(provider)[-1]


# --------------------------------------------------------------------------- Claude


@pytest.mark.parametrize("system", ["be brief", [{"type": "text", "text": "be brief"}]],
                         ids=["string", "text_blocks"])
async def test_claude_takes_a_top_level_system_and_records_it(
    fake: FakeVendor, claude: anthropic.AsyncAnthropic, system: Any
) -> None:
    message = await claude.messages.create(model="claude-x", max_tokens=50, system=system,
                                           messages=[USER])
    assert message.content[0].type == "text"
    assert last(fake, "claude").system_prompts == [("system", "be brief")]


@pytest.mark.parametrize(
    ("messages", "where", "reason"),
    [
        ([{"role": "system", "content": "be brief"}, USER], "messages[0] system",
         'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
         'parameter, not "system" as an input message role.'),
        ([USER, {"role": "system", "content": "be brief"}], "messages[1] system",
         "role 'system' is not supported on this model"),
    ],
    ids=["first", "after_a_user_turn"],
)
async def test_claude_refuses_a_system_message_in_messages(
    fake: FakeVendor, claude: anthropic.AsyncAnthropic, messages: list[Any], where: str,
    reason: str,
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(model="claude-x", max_tokens=50, messages=messages)
    assert caught.value.status_code == 400
    assert caught.value.body == {"type": "error",
                                 "error": {"type": "invalid_request_error", "message": reason},
                                 "request_id": caught.value.body["request_id"]}
    record = last(fake, "claude")
    assert (record.status, record.system_prompts) == (400, [(where, "be brief")])


@pytest.mark.parametrize(
    ("system", "reason"),
    [
        (None, "system: Input should be a valid array"),
        ({"type": "text", "text": "be brief"}, "system: Input should be a valid array"),
        ([{"type": "image", "source": {}}], "system.0.type: Input should be 'text'"),
        (["be brief"], "system.0.type: Input should be 'text'"),
        ([{"type": "text", "text": "a"}, {"type": "text"}], "system.1.text: Field required"),
    ],
    ids=["null", "object", "image_block", "bare_string_item", "text_block_without_text"],
)
async def test_claude_refuses_a_system_that_is_not_text(
    fake: FakeVendor, http: httpx2.AsyncClient, system: Any, reason: str
) -> None:
    body = {"model": "claude-x", "max_tokens": 50, "system": system, "messages": [USER]}
    answer = await http.post(fake.base_url("claude") + "/v1/messages", json=body,
                             headers={"x-api-key": "sk-ant-test"})
    assert answer.status_code == 400
    assert answer.json()["error"] == {"type": "invalid_request_error", "message": reason}


# --------------------------------------------------------------------------- Gemini


async def test_gemini_reads_system_instruction_and_records_it(
    fake: FakeVendor, gemini: genai.client.AsyncClient
) -> None:
    await gemini.models.generate_content(
        model="gemini-3.1-flash-lite", contents="hello there",
        config=genai_types.GenerateContentConfig(system_instruction="be brief"))
    assert last(fake, "gemini").system_prompts == [("systemInstruction", "be brief")]


@pytest.mark.parametrize("role", ["system", "assistant", "developer"])
async def test_gemini_refuses_a_content_role_other_than_user_or_model(
    fake: FakeVendor, gemini: genai.client.AsyncClient, role: str
) -> None:
    contents = [genai_types.Content(role=role, parts=[genai_types.Part(text="be brief")]),
                genai_types.Content(role="user", parts=[genai_types.Part(text="hello there")])]
    with pytest.raises(genai_errors.ClientError) as caught:
        await gemini.models.generate_content(model="gemini-3.1-flash-lite", contents=contents)
    exc = caught.value
    assert (exc.code, exc.status) == (400, "INVALID_ARGUMENT")
    assert exc.message == "Please use a valid role: user, model."
    if role == "system":
        assert last(fake, "gemini").system_prompts == [("contents[0] system", "be brief")]


async def test_gemini_takes_a_content_without_a_role(
    fake: FakeVendor, http: httpx2.AsyncClient
) -> None:
    url = fake.base_url("gemini") + "/v1beta/models/gemini-3.1-flash-lite:generateContent"
    body = {"contents": [{"parts": [{"text": "hello there"}]}]}
    answer = await http.post(url, json=body, headers={"x-goog-api-key": "g-key-1"})
    assert answer.status_code == 200


@pytest.mark.parametrize("system", ["be brief", ["be brief"], {"text": "be brief"}],
                         ids=["string", "list", "part_not_content"])
async def test_gemini_refuses_a_system_instruction_that_is_not_a_content(
    fake: FakeVendor, http: httpx2.AsyncClient, system: Any
) -> None:
    url = fake.base_url("gemini") + "/v1beta/models/gemini-3.1-flash-lite:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "systemInstruction": system}
    answer = await http.post(url, json=body, headers={"x-goog-api-key": "g-key-1"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"].startswith(
        "Invalid value at 'system_instruction' "
        "(type.googleapis.com/google.ai.generativelanguage.v1beta.Content), ")


# --------------------------------------------------------------------------- the others


@pytest.mark.parametrize("role", ["developer", "system"])
async def test_openai_records_a_developer_or_system_message(
    fake: FakeVendor, http: httpx2.AsyncClient, role: str
) -> None:
    client = openai.AsyncOpenAI(api_key="sk-test-1", base_url=fake.base_url("openai"),
                                max_retries=0, http_client=http)
    await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": role, "content": "be brief"}, USER])  # type: ignore[misc,list-item]
    assert last(fake, "openai").system_prompts == [(f"messages[0] {role}", "be brief")]


async def test_qwen_records_a_first_system_message(
    fake: FakeVendor, http: httpx2.AsyncClient
) -> None:
    url = fake.base_url("qwen") + "/api/v1/services/aigc/text-generation/generation"
    body = {"model": "qwen-max", "input": {"messages": [
        {"role": "system", "content": "be brief"}, USER]}, "parameters": {}}
    answer = await http.post(url, json=body, headers={"Authorization": "Bearer sk-q"})
    assert answer.status_code == 200
    assert last(fake, "qwen").system_prompts == [("input.messages[0] system", "be brief")]


async def test_the_control_endpoint_lists_the_system_prompts(
    fake: FakeVendor, claude: anthropic.AsyncAnthropic, http: httpx2.AsyncClient
) -> None:
    await claude.messages.create(model="claude-x", max_tokens=50, system="be brief",
                                 messages=[USER])
    listed = (await http.get(fake.url + "/_fake/requests?provider=claude")).json()
    assert listed[-1]["system_prompts"] == [["system", "be brief"]]
