"""The shared vendor-error helpers: every status class, Retry-After in both forms, scrubbing of
keys in no known shape, transport failures, turn merging and SSE framing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx2
import pytest

from llm_service.providers.base import (
    ChatTurn,
    FailureKind,
    ProviderError,
    kind_for_status,
    merge_turns,
    retry_after_seconds,
    scrub,
    sse_events,
    status_failure,
    transport_failure,
)

# A key in no vendor's shape: no sk-, hf_ or AIza prefix, no label before it.
ODD_KEY = "Zq9vTt3LmW8xPq2RkYb7"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, FailureKind.BAD_REQUEST), (401, FailureKind.AUTH), (402, FailureKind.BAD_REQUEST),
        (403, FailureKind.AUTH), (404, FailureKind.BAD_REQUEST), (422, FailureKind.BAD_REQUEST),
        (428, FailureKind.BAD_REQUEST), (429, FailureKind.RATE_LIMITED),
        (430, FailureKind.BAD_REQUEST), (499, FailureKind.BAD_REQUEST),
        (500, FailureKind.UPSTREAM), (502, FailureKind.UPSTREAM), (503, FailureKind.UPSTREAM),
        (529, FailureKind.UPSTREAM), (599, FailureKind.UPSTREAM),
    ],
)
def test_kind_for_every_status_class(status: int, kind: FailureKind) -> None:
    assert kind_for_status(status) is kind


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3), ("0", 0), ("2.1", 3), ("0.0001", 1), ("-5", 0), ("120", 120)],
)
def test_retry_after_in_seconds_rounds_up(value: str, seconds: int) -> None:
    assert retry_after_seconds({"retry-after": value}) == seconds


def test_retry_after_header_name_is_case_insensitive() -> None:
    assert retry_after_seconds(httpx2.Headers({"Retry-After": "7"})) == 7


@pytest.mark.parametrize("headers", [None, {}, {"x-other": "1"}, {"retry-after": ""},
                                     {"retry-after": "soon"}, {"retry-after": "1e999x"}])
def test_retry_after_absent_or_unreadable_is_none(headers: dict[str, str] | None) -> None:
    assert retry_after_seconds(headers) is None


def test_retry_after_as_an_http_date() -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    seconds = retry_after_seconds({"retry-after": format_datetime(future, usegmt=True)})
    assert seconds is not None and 3500 < seconds <= 3600
    past = datetime.now(UTC) - timedelta(hours=1)
    assert retry_after_seconds({"retry-after": format_datetime(past, usegmt=True)}) == 0


def test_the_exact_key_is_scrubbed_whatever_its_shape() -> None:
    text = f"Incorrect API credentials {ODD_KEY}. Also {ODD_KEY}!"
    assert scrub(text, ODD_KEY) == "Incorrect API credentials [redacted]. Also [redacted]!"


def test_without_a_key_text_is_left_alone() -> None:
    assert scrub("nothing secret here", "") == "nothing secret here"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bad sk-abcd1234 there", "bad [redacted] there"),
        ("bad sk-ant-api03-xyz_w there", "bad [redacted] there"),
        ("token hf_abcdEFGH", "token [redacted]"),
        ("key AIzaSyA-123456", "key [redacted]"),
        ("Authorization: Bearer   abc.def-ghi", "Authorization: [redacted]"),
        ("api_key: xyz12345 is wrong", "api_key: [redacted] is wrong"),
        ("API key provided = abc-def-123", "API key provided = [redacted]"),
        ("apikey=qwerty99", "apikey=[redacted]"),
        ("task-sk-abcdef", "task-[redacted]"),
        ("risk-abcdefgh stays", "risk-abcdefgh stays"),  # not a key: "sk-" inside a word
        ("sk-abc", "sk-abc"),  # too short to be a key
    ],
)
def test_key_shapes_and_labelled_keys_are_scrubbed(text: str, expected: str) -> None:
    assert scrub(text, "sk-the-users-own-key") == expected


def test_scrub_collapses_whitespace_and_caps_the_length() -> None:
    assert scrub("  a\n\tb   c  ", "k" * 20) == "a b c"
    assert scrub("x" * 1000, "k" * 20) == "x" * 300
    assert scrub("   \n ", "k" * 20) is None
    assert scrub("", "k") is None
    assert scrub(None, "k") is None


def test_status_failure_carries_kind_scrubbed_detail_and_retry_after() -> None:
    error = status_failure(403, f"key {ODD_KEY} refused", ODD_KEY, {"retry-after": "4"})
    assert (error.kind, error.status, error.detail, error.retry_after_s) == (
        FailureKind.AUTH, 403, "key [redacted] refused", 4)
    assert str(error) == "auth: status 403"
    assert not error.retryable
    override = status_failure(400, None, ODD_KEY, None, FailureKind.RATE_LIMITED)
    assert (override.kind, override.detail, override.retry_after_s) == (
        FailureKind.RATE_LIMITED, None, None)


def test_only_upstream_failures_are_retryable() -> None:
    assert [k for k in FailureKind if ProviderError(k).retryable] == [FailureKind.UPSTREAM]
    plain = ProviderError(FailureKind.MALFORMED)
    assert (plain.status, plain.detail, plain.retry_after_s) == (None, None, None)


def _request() -> httpx2.Request:
    return httpx2.Request("POST", "http://127.0.0.1/v1")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx2.ReadTimeout("slow", request=_request()), FailureKind.TIMEOUT),
        (httpx2.WriteTimeout("slow", request=_request()), FailureKind.TIMEOUT),
        (httpx2.PoolTimeout("slow", request=_request()), FailureKind.TIMEOUT),
        (httpx2.ConnectTimeout("refused", request=_request()), FailureKind.UPSTREAM),
        (httpx2.ConnectError("refused", request=_request()), FailureKind.UPSTREAM),
        (httpx2.RemoteProtocolError("cut", request=_request()), FailureKind.UPSTREAM),
    ],
)
def test_transport_failures(exc: Exception, kind: FailureKind) -> None:
    assert transport_failure(exc).kind is kind


def test_a_wrapped_timeout_is_found_by_cause_or_context() -> None:
    class SDKError(Exception):
        pass

    by_cause = SDKError("timed out")
    by_cause.__cause__ = httpx2.ReadTimeout("slow", request=_request())
    assert transport_failure(by_cause).kind is FailureKind.TIMEOUT
    by_context = SDKError("timed out")
    by_context.__context__ = httpx2.ReadTimeout("slow", request=_request())
    assert transport_failure(by_context).kind is FailureKind.TIMEOUT
    assert transport_failure(SDKError("no cause")).kind is FailureKind.UPSTREAM


def test_merge_turns_joins_consecutive_turns_of_one_role() -> None:
    turns = [ChatTurn("user", "a"), ChatTurn("user", "b"), ChatTurn("assistant", "c"),
             ChatTurn("user", "d"), ChatTurn("user", "e"), ChatTurn("user", "f")]
    assert merge_turns(turns) == [ChatTurn("user", "a\n\nb"), ChatTurn("assistant", "c"),
                                  ChatTurn("user", "d\n\ne\n\nf")]
    assert turns[0] == ChatTurn("user", "a")
    assert merge_turns([]) == []


async def _events(body: bytes) -> list[tuple[str, str]]:
    response = httpx2.Response(200, content=body)
    return [event async for event in sse_events(response)]


async def test_sse_events_frames_and_names() -> None:
    body = (b"data: one\n\n"
            b"event: delta\ndata:two\ndata:  three\n\n"
            b": a comment\n\n"
            b"event:  usage \nid: 4\ndata: {}\n\n"
            b"data: after a named event\n\n"
            b"event:ping\ndata: p\n\n"
            b"data: last,\ndata: unterminated")
    assert await _events(body) == [
        ("message", "one"),
        ("delta", "two\n three"),
        ("usage", "{}"),
        ("message", "after a named event"),
        ("ping", "p"),
        ("message", "last,\nunterminated"),
    ]


async def test_sse_events_skips_empty_frames() -> None:
    assert await _events(b"\n\nevent: x\n\n\ndata: y\n") == [("message", "y")]
