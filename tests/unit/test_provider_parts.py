"""The parts of `providers.base` every adapter shares: the stream failures, a vendor answer that
grew too large, what an adapter keeps of its construction, and the key forms `scrub` looks for
(pinned as known answers: a changed alignment or alphabet would let an encoded key through)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx2

from llm_service.providers.base import (
    ChatRequest,
    Completion,
    Credentials,
    FailureKind,
    Provider,
    StreamEvent,
    VendorAnswerTooLarge,
    VendorSpec,
    _key_forms,
    scrub,
    stream_cut,
    stream_error_event,
    transport_failure,
    unreadable_chunk,
)

KEY = "CanaryQ7f3a9c2eDoNotLeak4d1bZ"  # no known key shape


def test_a_cut_stream_is_an_upstream_failure_that_says_so() -> None:
    error = stream_cut()
    assert (error.kind, error.status, error.retry_after_s) == (FailureKind.UPSTREAM, None, None)
    assert error.detail == "the answer stopped before its end"


def test_an_unreadable_chunk_is_malformed_with_no_detail() -> None:
    error = unreadable_chunk()
    assert (error.kind, error.status, error.detail) == (FailureKind.MALFORMED, None, None)


def test_an_error_event_is_upstream_by_default_and_scrubbed() -> None:
    error = stream_error_event(f"overloaded  for {KEY}", KEY)
    assert (error.kind, error.status) == (FailureKind.UPSTREAM, None)
    assert error.detail == "overloaded for [redacted]"
    refused = stream_error_event("quota", KEY, FailureKind.RATE_LIMITED)
    assert (refused.kind, refused.detail) == (FailureKind.RATE_LIMITED, "quota")


def test_an_answer_too_large_is_malformed_and_names_the_limit() -> None:
    error = transport_failure(VendorAnswerTooLarge("the vendor's answer passed 1048576 bytes"))
    assert (error.kind, error.detail) == (FailureKind.MALFORMED,
                                          "the vendor's answer passed 1048576 bytes")
    assert not error.retryable


def test_a_provider_error_names_its_kind_and_status() -> None:
    assert str(stream_cut()) == "upstream: status None"


class _Echo(Provider):
    """An adapter that calls its endpoint through the client and timeout it was made with."""

    async def complete(self, request: ChatRequest, creds: Credentials) -> Completion:
        response = await self._http.post(f"{creds.base_url}/echo", timeout=self._timeout_s,
                                         json={"model": request.model})
        return Completion(response.text, request.model, 1, 1)

    async def stream(self, request: ChatRequest, creds: Credentials
                     ) -> AsyncIterator[StreamEvent]:  # pragma: no cover - not called
        raise NotImplementedError
        yield


async def test_a_provider_calls_through_the_client_and_timeout_it_was_made_with() -> None:
    seen: list[object] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.extensions["timeout"])
        return httpx2.Response(200, text=f"{request.url.path} {request.content.decode()}")

    spec = VendorSpec("echo", "Echo", "http://127.0.0.1:9", "m1", _Echo, "openai")
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http:
        provider = spec.adapter(spec, http, 7.5)
        answer = await provider.complete(ChatRequest("m1", [], 0.0, 10),
                                         Credentials("sk-x", "http://127.0.0.1:9"))
    assert (provider.id, provider.display_name) == ("echo", "Echo")
    assert answer.text == '/echo {"model":"m1"}'
    assert seen == [{"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}]
    assert repr(Credentials("sk-secret", "http://h")) == "Credentials(base_url='http://h')"


def test_the_key_forms_are_the_key_and_its_base64_at_three_alignments() -> None:
    # '~' and '?' put '+' and '/' into the standard alphabet (URL-safe: '-' and '_'); at the
    # second alignment the encoding ends in 'X', which only the '=' padding may be stripped of.
    key = "Canary~~~???keyaW"
    assert [base64.b64encode(b"\0" * pad + key.encode()).decode() for pad in range(3)] == [
        "Q2FuYXJ5fn5+Pz8/a2V5YVc=", "AENhbmFyeX5+fj8/P2tleWFX", "AABDYW5hcnl+fn4/Pz9rZXlhVw==",
    ]
    # Each core drops the characters the alignment's zero bytes shaped (0, 2, 3) and the last 3,
    # which the bytes after the key would shape inside a longer value.
    assert _key_forms(key) == [
        key,
        "Q2FuYXJ5fn5+Pz8/a2V5", "Q2FuYXJ5fn5-Pz8_a2V5",
        "NhbmFyeX5+fj8/P2tle", "NhbmFyeX5-fj8_P2tle",
        "DYW5hcnl+fn4/Pz9rZXl", "DYW5hcnl-fn4_Pz9rZXl",
    ]


def test_forms_of_exactly_eight_characters_count() -> None:
    # The key and two cores are 8 characters long, the window's size; the third core
    # ("FiY2QxM", from "AGFiY2QxMjM0") is shorter and says nothing.
    assert _key_forms("abcd1234") == ["abcd1234", "YWJjZDEy", "YWJjZDEy", "hYmNkMTI", "hYmNkMTI"]
    assert scrub("key ABCD1234 refused", "abcd1234") == "key [redacted] refused"


def test_echoes_at_both_ends_of_the_message_become_one_marker_each() -> None:
    assert scrub(f"{KEY.upper()} then {KEY.lower()}", KEY) == "[redacted] then [redacted]"
    assert scrub(f"{KEY.upper()} is unknown", KEY) == "[redacted] is unknown"
    assert scrub(f"{KEY.upper()[:8]}", KEY) == "[redacted]"
    assert scrub(f"x{KEY.lower()[5:13]}y{KEY[-8:]}", KEY) == "x[redacted]y[redacted]"
