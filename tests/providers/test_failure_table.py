"""Every adapter through the same failure table (issue 11, item 4): each row is a way a vendor
fails, served by the fake vendor in that vendor's own shape, and names the `FailureKind` it must
become for each vendor, on the complete path and on the stream path alike. Calls go through the
`ProviderRegistry` (no retries, a short deadline), as the chat routes make them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llm_service.providers.base import ChatRequest, ChatTurn, FailureKind, ProviderError
from llm_service.providers.registry import ProviderRegistry, make_http_client, provider_ids
from tests.conftest import make_settings, vendor_settings
from tests.fakes.vendor import FakeVendor

K = FailureKind


@dataclass(frozen=True)
class Row:
    name: str
    mode: str
    options: dict[str, Any]
    kind: FailureKind
    retry_after_s: int | None = None
    detail: str | None = None  # a part of the reason passed on, where the row fixes one
    per_vendor: dict[str, FailureKind] = field(default_factory=dict)

    def expected(self, provider: str) -> FailureKind:
        return self.per_vendor.get(provider, self.kind)


BOTH_PATHS = [
    # Gemini rejects a key with 400 API_KEY_INVALID, the others with 401.
    Row("key rejected", "auth", {}, K.AUTH),
    Row("403", "status", {"status": 403}, K.AUTH),
    Row("400 unknown model", "bad_request", {}, K.BAD_REQUEST),
    Row("404", "status", {"status": 404}, K.BAD_REQUEST),
    Row("429 with Retry-After", "rate_limit", {"retry_after": 7}, K.RATE_LIMITED, 7),
    Row("429 without Retry-After", "status", {"status": 429, "retry_after": None},
        K.RATE_LIMITED, None),
    Row("500", "server_error", {}, K.UPSTREAM),
    Row("503", "status", {"status": 503}, K.UPSTREAM),
    Row("529 overloaded", "status", {"status": 529}, K.UPSTREAM),
    Row("malformed JSON", "malformed", {}, K.MALFORMED),
    Row("hang", "hang", {}, K.TIMEOUT),
]
STREAM_ONLY = [
    Row("stream cut before its end marker", "stream_error", {"stream_error_style": "end"},
        K.UPSTREAM, detail="stopped before its end"),
    Row("in-stream error event", "stream_error", {"stream_error_style": "event"}, K.UPSTREAM,
        detail=""),  # the vendor's own reason, whatever it is
    Row("connection dropped mid-stream", "stream_error", {"stream_error_style": "close"},
        K.UPSTREAM),
]
REQUEST = ChatRequest(model="m-1", messages=[ChatTurn("user", "hello")], temperature=0.5,
                      max_tokens=64)
KEY = "Zq9fT2kLm8Vx4Rw7"


@pytest.fixture(scope="module")
async def registry(
    fake_vendor: FakeVendor, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProviderRegistry]:
    tmp: Path = tmp_path_factory.mktemp("failure-table")
    settings = make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'x.db'}",
                             LLM_UPSTREAM_MAX_RETRIES=0, LLM_UPSTREAM_TIMEOUT_S=1.0,
                             **vendor_settings(fake_vendor))
    http = make_http_client(settings)
    try:
        yield ProviderRegistry(settings, http)
    finally:
        await http.aclose()


async def _complete(registry: ProviderRegistry, provider: str) -> None:
    await registry.complete(provider, REQUEST, KEY)


async def _stream(registry: ProviderRegistry, provider: str) -> None:
    _, events = await registry.open_stream(provider, REQUEST, KEY)
    try:
        async for _ in events:
            pass
    finally:
        await events.aclose()  # type: ignore[attr-defined]


PATHS = {"complete": _complete, "stream": _stream}


def _cases() -> list[Any]:
    rows = [(row, path) for row in BOTH_PATHS for path in PATHS]
    rows += [(row, "stream") for row in STREAM_ONLY]
    return [
        pytest.param(row, path, provider, id=f"{row.name}-{path}-{provider}")
        for row, path in rows for provider in provider_ids()
    ]


@pytest.mark.parametrize(("row", "path", "provider"), _cases())
async def test_failure_becomes_its_kind(
    registry: ProviderRegistry, fake_vendor: FakeVendor, row: Row, path: str, provider: str
) -> None:
    fake_vendor.reset()
    fake_vendor.set_behaviour(row.mode, provider=provider, **row.options)
    with pytest.raises(ProviderError) as caught:
        await PATHS[path](registry, provider)
    assert caught.value.kind is row.expected(provider)
    if row.kind is K.RATE_LIMITED:
        assert caught.value.retry_after_s == row.retry_after_s
    if row.detail is not None:
        assert caught.value.detail is not None and row.detail in caught.value.detail
    assert KEY not in str(caught.value.detail)
    assert len(fake_vendor.requests_for(provider)) == 1  # no retry: the caller decides


# No credit (issue 12 item 5): the same kinds as the vendor's status says, flagged `billing` so
# the sentence says to add credit; never retried. Gemini's used-up free tier is a plain quota.
BILLING = {"openai": (K.RATE_LIMITED, True), "huggingface": (K.BAD_REQUEST, True),
           "claude": (K.BAD_REQUEST, True), "qwen": (K.BAD_REQUEST, True),
           "gemini": (K.RATE_LIMITED, False)}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("provider", provider_ids())
async def test_billing_failures_are_flagged_and_not_retried(
    registry: ProviderRegistry, fake_vendor: FakeVendor, provider: str, path: str
) -> None:
    fake_vendor.reset()
    fake_vendor.set_behaviour("billing", provider=provider)
    with pytest.raises(ProviderError) as caught:
        await PATHS[path](registry, provider)
    assert (caught.value.kind, caught.value.billing) == BILLING[provider]
    assert caught.value.detail  # the vendor's own sentence, read from its shape (SSE for Qwen)
    assert len(fake_vendor.requests_for(provider)) == 1


@pytest.mark.parametrize("path", list(PATHS))
async def test_gemini_retry_info_becomes_retry_after(
    registry: ProviderRegistry, fake_vendor: FakeVendor, path: str
) -> None:
    fake_vendor.reset()
    fake_vendor.set_behaviour("rate_limit", provider="gemini", retry_after=37, retry_header=False)
    with pytest.raises(ProviderError) as caught:
        await PATHS[path](registry, "gemini")
    assert (caught.value.kind, caught.value.retry_after_s) == (K.RATE_LIMITED, 37)


async def test_dashscope_reads_its_sse_error_body_on_a_streaming_call(
    registry: ProviderRegistry, fake_vendor: FakeVendor
) -> None:
    fake_vendor.reset()
    fake_vendor.set_behaviour("auth", provider="qwen")
    with pytest.raises(ProviderError) as caught:
        await _stream(registry, "qwen")
    assert caught.value.kind is K.AUTH
    assert caught.value.detail == "Invalid API-key provided."
    record = fake_vendor.requests_for("qwen")[-1]
    assert record.stream and record.status == 401


async def test_hugging_face_error_chunks_are_read(
    registry: ProviderRegistry, fake_vendor: FakeVendor
) -> None:
    fake_vendor.reset()
    fake_vendor.set_behaviour("stream_error", provider="huggingface", stream_error_style="event")
    with pytest.raises(ProviderError) as caught:
        await _stream(registry, "huggingface")
    assert (caught.value.kind, caught.value.detail) == (K.UPSTREAM, "Model is overloaded")
