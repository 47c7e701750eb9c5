"""Request rules from the model catalogue (issue 12 item 2): each adapter sends a model only what
it accepts. Unit tests build each adapter's request body without a call; the fake-vendor tests
in tests/providers/test_strict_vendor.py check what the vendor receives."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from llm_service.catalog import load_catalog
from llm_service.providers.base import ChatRequest, ChatTurn, Credentials, Provider
from llm_service.providers.registry import VENDORS

CREDS = Credentials(api_key="sk-test-rules-0000", base_url="http://127.0.0.1:9/x")


def request(model: str, max_tokens: int = 1000) -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatTurn("user", "hi")], temperature=0.7,
                       max_tokens=max_tokens)


@pytest.fixture
async def adapters() -> AsyncIterator[dict[str, Provider]]:
    async with httpx2.AsyncClient() as http:
        yield {id_: spec.adapter(spec, http, 5.0, load_catalog()) for id_, spec in VENDORS.items()}


@pytest.mark.parametrize("model", ["o3", "o4-mini", "o7-preview", "gpt-5", "gpt-5.4",
                                   "gpt-6.2-sol", "gpt-9-anything"])
async def test_openai_reasoning_models_get_no_temperature(
    adapters: dict[str, Provider], model: str
) -> None:
    body = adapters["openai"].body(request(model), stream=False)  # type: ignore[attr-defined]
    assert "temperature" not in body
    assert body["max_completion_tokens"] == 1000
    assert "max_tokens" not in body


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4.1", "house-model-7b"])
async def test_other_openai_models_keep_the_temperature(
    adapters: dict[str, Provider], model: str
) -> None:
    body = adapters["openai"].body(request(model), stream=True)  # type: ignore[attr-defined]
    assert body["temperature"] == 0.7
    assert body["max_completion_tokens"] == 1000


async def test_hugging_face_gets_max_tokens_and_the_temperature(
    adapters: dict[str, Provider],
) -> None:
    body = adapters["huggingface"].body(  # type: ignore[attr-defined]
        request("meta-llama/Llama-3.3-70B-Instruct"), stream=False)
    assert (body["temperature"], body["max_tokens"]) == (0.7, 1000)
    assert "max_completion_tokens" not in body


@pytest.mark.parametrize("model", ["qwen3-32b", "qwen3-14b", "qwen4-max"])
async def test_qwen3_open_models_get_enable_thinking_false_without_streaming(
    adapters: dict[str, Provider], model: str
) -> None:
    qwen = adapters["qwen"]
    plain = qwen.body(request(model), stream=False)["parameters"]  # type: ignore[attr-defined]
    streamed = qwen.body(request(model), stream=True)["parameters"]  # type: ignore[attr-defined]
    assert plain["enable_thinking"] is False
    assert "enable_thinking" not in streamed  # a stream may think
    assert plain["max_tokens"] == streamed["max_tokens"] == 1000


@pytest.mark.parametrize("model", ["qwen-plus", "qwen-max", "qwen3-max"])
async def test_other_qwen_models_get_no_enable_thinking(
    adapters: dict[str, Provider], model: str
) -> None:
    parameters = adapters["qwen"].body(request(model), stream=False)[  # type: ignore[attr-defined]
        "parameters"]
    assert "enable_thinking" not in parameters
    assert parameters["temperature"] == 0.7


async def test_gemini_without_temperature_where_the_catalogue_says_so(
    adapters: dict[str, Provider],
) -> None:
    gemini = adapters["gemini"]
    _, refused = gemini._request(request("gemini-3.8-flash"), CREDS)  # type: ignore[attr-defined]
    _, taken = gemini._request(request("gemini-3.1-pro-preview"),  # type: ignore[attr-defined]
                               CREDS)
    assert refused.temperature is None
    assert taken.temperature == 0.7
    assert refused.max_output_tokens == taken.max_output_tokens == 1000
    assert refused.thinking_config is None  # thinking levels need no budget


async def test_gemini_2_5_gets_a_thinking_budget_inside_the_output_limit(
    adapters: dict[str, Provider],
) -> None:
    gemini = adapters["gemini"]
    _, config = gemini._request(request("gemini-2.5-flash", 1000),  # type: ignore[attr-defined]
                                CREDS)
    assert config.thinking_config is not None
    assert config.thinking_config.thinking_budget == 500
    _, small = gemini._request(request("gemini-2.5-pro", 100), CREDS)  # type: ignore[attr-defined]
    assert small.thinking_config.thinking_budget == 128  # Gemini 2.5 Pro's smallest budget


async def test_claude_never_gets_a_temperature_or_a_thinking_budget(
    adapters: dict[str, Provider],
) -> None:
    claude = adapters["claude"]
    for model in ("claude-sonnet-5-5", "claude-haiku-4-5"):
        assert not claude.takes_temperature(model)
        assert claude.thinking_budget(model, 1000) is None
