"""A fake LLM vendor: one HTTP server that speaks the wire format of every registered vendor.

Its routes derive from the service's vendor registry (`llm_service.providers.registry.VENDORS`):
each vendor is served under `/<id>` by the fake of its wire format (`VendorSpec.wire`), or by a
fake of its own where the vendor differs (`FAKES_BY_ID`), so a vendor registered by a test is
served by a `FakeVendor` made after it.

For tests (in-process) and for frontend developers (standalone). Nothing leaves 127.0.0.1.

Standalone, from the repository root::

    .venv/bin/python -m tests.fakes.vendor --port 9100

prints the base-URL settings for the service and serves until Ctrl-C::

    LLM_OPENAI_BASE_URL=http://127.0.0.1:9100/openai/v1
    LLM_GEMINI_BASE_URL=http://127.0.0.1:9100/gemini
    LLM_CLAUDE_BASE_URL=http://127.0.0.1:9100/claude
    LLM_QWEN_BASE_URL=http://127.0.0.1:9100/qwen
    LLM_HUGGINGFACE_BASE_URL=http://127.0.0.1:9100/huggingface/v1

In-process::

    with FakeVendor() as fake:
        client = openai.AsyncOpenAI(api_key="sk-x", base_url=fake.base_url("openai"))
        fake.set_behaviour("rate_limit", provider="openai", times=1, retry_after=3)
        fake.requests_for("openai")[-1].headers["authorization"]  # "Bearer sk-x"

Routes (one server, told apart by the path prefix):

* OpenAI       ``POST /openai/v1/chat/completions``            key ``Authorization: Bearer``
* Hugging Face ``POST /huggingface/v1/chat/completions``       same OpenAI-compatible format
* Claude       ``POST /claude/v1/messages``                    key ``x-api-key`` or ``Bearer``
* Gemini       ``POST /gemini/{v1|v1beta}/models/{model}:generateContent``
               ``POST /gemini/{v1|v1beta}/models/{model}:streamGenerateContent?alt=sse``
               (without ``alt=sse``: one JSON array); key ``x-goog-api-key`` (or ``?key=``)
* Qwen         ``POST /qwen/api/v1/services/aigc/text-generation/generation``
               key ``Authorization: Bearer``; streams when ``X-DashScope-SSE: enable`` or
               ``Accept: text/event-stream``

Answers are deterministic: the reply is ``"Echo from <provider> <model>: <last user text>"``;
input tokens = whitespace-separated words over all input messages and the system prompt; output
tokens = words of the reply. A stream splits the reply into ``pieces`` parts (default 4) with a
pause of ``delay`` seconds (default 0.05) between them; the parts concatenate to the reply.
A request without a key gets the vendor's missing-key answer, and a key starting with ``bad``
gets the vendor's invalid-key answer, whatever the behaviour (handy for frontend work).

Behaviours (``set_behaviour(mode, provider=None, times=None, **options)`` or
``POST /_fake/behaviour {"mode", "provider"?, "times"?, <options>}``). A provider's own behaviour
wins over the global one; with ``times`` it applies to that many requests, then is dropped.

* ``ok``            normal answers.
* ``auth``          the vendor's invalid-key answer: 401 (OpenAI, HF, Claude, Qwen), 400
                    ``API_KEY_INVALID`` (Gemini).
* ``rate_limit``    429 in the vendor's shape with ``Retry-After: <retry_after>`` (Gemini also
                    carries a ``RetryInfo`` detail).
* ``server_error``  500 in the vendor's shape.
* ``bad_request``   400 in the vendor's shape, "unknown model".
* ``malformed``     200 ``application/json`` whose body is not JSON; a streaming request gets a
                    200 event stream whose first event carries broken JSON.
* ``oversized``     a normal answer whose reply is padded with ``oversize_bytes`` (default
                    9 MiB) of ``x``: a valid body (or stream) too large to be worth reading.
* ``echo_key``      400 in the vendor's shape whose message echoes the request's key transformed:
                    upper-cased, base64-encoded and split in two halves around a space.
* ``hang``          never answers: waits until the client goes away (recorded as
                    ``disconnected_at``), the server stops (then 503), or ``hang_seconds``
                    (default 300) pass (then answers like ``server_error``). Also for streams:
                    nothing is sent, not even the headers.
* ``stream_error``  streaming requests send ``error_after`` pieces (default 2), then fail;
                    non-streaming requests are answered normally. Per vendor (style ``event``):
                    OpenAI ``data: {"error": {...}}`` then end of stream without ``[DONE]`` (the
                    openai SDK raises ``openai.APIError``); Claude ``event: error`` with
                    ``overloaded_error``; Gemini ``data: {"error": {"code": 500, ...,
                    "status": "INTERNAL"}}`` (google-genai raises ``ServerError``); Qwen
                    ``event:error`` with ``:HTTP_STATUS/500`` and an ``InternalError`` body.
                    Hugging Face defaults to style ``close``: the connection is dropped in the
                    middle of the chunked body (the client sees an incomplete read). The option
                    ``stream_error_style`` = ``"event"`` | ``"close"`` overrides the default;
                    ``"end"`` ends the body properly but before the vendor's end marker
                    (``[DONE]``, ``message_stop``, a ``finishReason``, a DashScope
                    ``finish_reason``): a stream cut short.
* ``billing``       the vendor's no-credit answer: OpenAI 429 ``insufficient_quota``, Claude
                    402 ``billing_error``, DashScope 400 ``Arrearage``, Hugging Face 402,
                    Gemini 429 ``RESOURCE_EXHAUSTED``.
* ``blocked`` / ``refused`` / ``truncated`` / ``thinking`` / ``cached``: 200 answers that are not
                    a plain reply (a blocked prompt or safety stop, a refusal, a reply cut at the
                    limit, with ``empty`` nothing before it, reasoning tokens reported apart
                    (``thinking_tokens``), input read from the cache (``cached_tokens``)), each
                    in the vendor's own fields (see the vendor classes).
* ``status``        the vendor's error answer for HTTP ``status`` (option, default 503): 403,
                    404, 429, 503 and Claude's 529 in each vendor's own shape (others as 500
                    is). ``retry_after=None`` leaves ``Retry-After`` out of a 429.

Checks run in this order: ``hang``; missing key (Gemini 403 ``PERMISSION_DENIED``, others 401);
``auth`` or a ``bad...`` key; ``rate_limit`` / ``server_error``; body validation (a vendor-shaped
400 for e.g. missing ``model``/``messages``/``contents``, or Claude's ``max_tokens``);
``bad_request``; the strict rules (below); then the answer (``ok``, ``malformed``,
``stream_error``).

Strict rules (`Vendor.refuse`, from the packaged model catalogue; each cites its source where it
is defined): every vendor refuses an id the catalogue lists as retired today (OpenAI, Claude,
Gemini 404; DashScope and the Hugging Face router 400); OpenAI refuses a temperature other than 1
(400 ``unsupported_value``) and ``max_tokens`` (400 ``unsupported_parameter``) on its reasoning
models (o1/o3/o4, gpt-5*, gpt-6*); DashScope refuses a non-streaming call to a Qwen3 open model
without ``enable_thinking: false`` (400 ``InvalidParameter``). System prompts have one place per
vendor: Claude refuses a ``role: "system"`` message in ``messages`` and a ``system`` that is not a
string or a list of text blocks (400 ``invalid_request_error``); Gemini refuses a ``contents``
role other than ``user``/``model`` and a ``systemInstruction`` that is not a Content (400
``INVALID_ARGUMENT``); these are body checks, run with the body validation. Where the real vendor
answers an unknown model with 404 (OpenAI, Claude, Gemini), this fake answers 400 on purpose.
Claude errors carry a ``request-id`` header; Qwen and Claude bodies a request id.

Options (defaults from the ``FakeVendor`` constructor): ``pieces``, ``delay``, ``retry_after``,
``hang_seconds``, ``error_after``, ``stream_error_style``, ``oversize_bytes``, ``status``.

Control endpoints: ``POST /_fake/behaviour``, ``GET /_fake/behaviour``, ``POST /_fake/reset``,
``GET /_fake/requests[?provider=...]`` (raw header values, keys included: it is a fake).

Every vendor request is recorded (``RecordedRequest``): provider, method, path, query, headers
(lower-case), parsed JSON body, ``system_prompts`` (each system prompt the body carries, as
(where, text): ``("messages[0] developer", ...)`` or ``("messages[0] system", ...)`` for OpenAI
and Hugging Face, ``("system", ...)`` for Claude, ``("systemInstruction", ...)`` for Gemini,
``("input.messages[0] system", ...)`` for DashScope, and a misplaced one where it was, such as
``("messages[1] system", ...)`` for Claude), ``received_at``, applied mode, status, whether it
streamed, ``finished_at`` (the fake finished the response: sent completely, or dropped on
purpose) and ``disconnected_at`` (the client went away first: an early-closed stream or a
timed-out hang).
Times are ``time.time()`` seconds. ``requests`` returns snapshots: read it again to see updates.

A dropped stream (``stream_error`` with style ``close``) makes uvicorn log "ASGI callable returned
without completing response.": that is expected.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from llm_service.catalog import load_catalog
from llm_service.providers.registry import VENDORS as SPECS

HOST = "127.0.0.1"
MODES: tuple[str, ...] = (
    "ok",
    "auth",
    "rate_limit",
    "server_error",
    "bad_request",
    "malformed",
    "hang",
    "stream_error",
    "oversized",
    "echo_key",
    "status",
    "billing",
    # Answers (HTTP 200) that are not a plain reply: see "Answer modes" in the docstring.
    "blocked",
    "refused",
    "truncated",
    "thinking",
    "cached",
)
ANSWER_MODES = frozenset({"blocked", "refused", "truncated", "thinking", "cached"})
# Per wire format: what follows /<id> in the base URL an SDK is given, and the vendor route.
WIRE_PATHS: dict[str, tuple[str, str]] = {
    "openai": ("/v1", "/v1/chat/completions"),
    "gemini": ("", "/{api_version}/{target:path}"),
    "claude": ("", "/v1/messages"),
    "qwen": ("", "/api/v1/services/aigc/text-generation/generation"),
}
DEFAULT_OPTIONS: dict[str, Any] = {
    "pieces": 4,
    "delay": 0.05,
    "retry_after": 7,
    "hang_seconds": 300.0,
    "error_after": 2,
    "stream_error_style": None,  # None: the vendor's default ("event", or "close" for HF)
    "oversize_bytes": 9 * 1024 * 1024,  # just over the service's default answer cap (8 MiB)
    "status": 503,  # the HTTP status of mode "status"
    "retry_header": True,  # False: a 429 without Retry-After (Gemini keeps its RetryInfo)
    "empty": False,  # mode "truncated": the token limit was used up before any text
    "thinking_tokens": 40,  # mode "thinking": reasoning tokens reported apart
    "cached_tokens": 2,  # mode "cached": input tokens read from the vendor's cache (<= input)
}
BAD_KEY_PREFIX = "bad"
MALFORMED_BODY = b'{"id": "fake-malformed", "choices": [{"message": '
MALFORMED_DATA = '{"id": "fake-malformed", "choices": [{"delta": '


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validate behaviour options; raise ValueError on an unknown name or a bad value."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; known: {sorted(DEFAULT_OPTIONS)}")
    for name in ("pieces", "error_after", "oversize_bytes", "thinking_tokens", "cached_tokens"):
        if name in options and (not isinstance(options[name], int) or options[name] < 0):
            raise ValueError(f"{name} must be a non-negative integer")
    if options.get("pieces") == 0:
        raise ValueError("pieces must be at least 1")
    for name in ("delay", "retry_after", "hang_seconds"):
        value = options.get(name, 0)
        if name == "retry_after" and value is None:  # a 429 without Retry-After
            continue
        if not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{name} must be a non-negative number")
    if options.get("stream_error_style") not in (None, "event", "close", "end"):
        raise ValueError('stream_error_style must be "event", "close", "end" or null')
    status = options.get("status", 503)
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError("status must be an HTTP error status (400-599)")
    return options


# --------------------------------------------------------------------------- state


@dataclass
class RecordedRequest:
    """One request a vendor route received (a snapshot: fetch again to see later updates)."""

    seq: int
    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    received_at: float
    mode: str = "ok"
    stream: bool = False
    status: int | None = None
    finished_at: float | None = None
    disconnected_at: float | None = None
    # Every system prompt the body carries, as (where, text) in body order: where the vendor
    # reads one ("system", "systemInstruction", "messages[0] developer", ...) or where it does not
    # ("messages[2] system", "contents[0] system"): see `Vendor.system_prompts`.
    system_prompts: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Rule:
    mode: str
    times: int | None
    options: dict[str, Any]


class _State:
    """Behaviours and records, shared by the server thread and the test thread."""

    def __init__(self, defaults: dict[str, Any], providers: tuple[str, ...]) -> None:
        self.providers = providers
        self._lock = threading.Lock()
        self._defaults = dict(defaults)
        self._rules: dict[str | None, _Rule] = {}
        self._records: list[RecordedRequest] = []
        self._seq = itertools.count(1)
        self.shutdown = asyncio.Event()

    def set_behaviour(
        self, mode: str, provider: str | None, times: int | None, options: dict[str, Any]
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {list(MODES)}")
        if provider is not None and provider not in self.providers:
            raise ValueError(f"unknown provider {provider!r}; known: {list(self.providers)}")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError("times must be a positive integer or None")
        check_options(options)
        with self._lock:
            self._rules[provider] = _Rule(mode, times, dict(options))

    def behaviours(self) -> dict[str, Any]:
        with self._lock:
            return {
                (key or "*"): {"mode": r.mode, "times": r.times, **r.options}
                for key, r in self._rules.items()
            }

    def choose(self, provider: str) -> tuple[str, dict[str, Any]]:
        """The mode and options for one request of `provider`; counts down `times`."""
        with self._lock:
            options = dict(self._defaults)
            general, own = self._rules.get(None), self._rules.get(provider)
            for rule in (general, own):
                if rule is not None:
                    options.update(rule.options)
            rule, key = (own, provider) if own is not None else (general, None)
            if rule is None:
                return "ok", options
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    del self._rules[key]
            return rule.mode, options

    def reset(self) -> None:
        with self._lock:
            self._rules.clear()
            self._records.clear()

    def add(self, **fields: Any) -> RecordedRequest:
        with self._lock:
            record = RecordedRequest(seq=next(self._seq), **fields)
            self._records.append(record)
            return record

    def update(self, record: RecordedRequest, **fields: Any) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(record, name, value)

    def records(self, provider: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._records if provider in (None, r.provider)]

    async def pause(self, seconds: float) -> bool:
        """Sleep; True if the server started stopping meanwhile."""
        if self.shutdown.is_set():
            return True
        try:
            await asyncio.wait_for(self.shutdown.wait(), seconds)
        except TimeoutError:
            return False
        return True


# --------------------------------------------------------------------------- helpers


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _words(text: str) -> int:
    return len(text.split())


def _split(text: str, pieces: int) -> list[str]:
    """Split into `pieces` near-equal parts (fewer if the text is shorter); exact concatenation."""
    n = max(1, min(pieces, len(text)))
    return [text[i * len(text) // n : (i + 1) * len(text) // n] for i in range(n)]


def _text(content: Any) -> str:
    """Text of a message content: a string or a list of parts with "text"."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = content.get("parts", [content])
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _role_messages(
    body: Any, key: str, roles: tuple[str, ...], prefix: str = ""
) -> list[tuple[str, str]]:
    """(f"{prefix}{key}[i] {role}", text) of the entries of `body[key]` with one of `roles`."""
    entries = body.get(key) if isinstance(body, dict) else None
    return [
        (f"{prefix}{key}[{i}] {entry['role']}", _text(entry.get("content", entry.get("parts"))))
        for i, entry in enumerate(entries if isinstance(entries, list) else ())
        if isinstance(entry, dict) and entry.get("role") in roles
    ]


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class Invalid(Exception):
    """The request body is not acceptable; the message says why (sent as a 400)."""


@dataclass
class Chat:
    """What a vendor request asks for, reduced to what the fake needs."""

    provider: str
    model: str
    texts: list[str]
    last_user: str
    stream: bool
    include_usage: bool = False  # OpenAI/HF stream_options.include_usage
    incremental: bool = False  # Qwen parameters.incremental_output
    message_format: bool = True  # Qwen result_format == "message"
    sse: bool = True  # Gemini: alt=sse (otherwise a JSON array)
    request_id: str = ""
    outcome: str = "ok"  # "ok" or an answer mode (blocked, refused, truncated, ...)
    empty: bool = False  # truncated before any text
    thinking_tokens: int = 0
    cached_tokens: int = 0

    @property
    def reply(self) -> str:
        """The text the answer carries: the echo; its first half when truncated (nothing when
        `empty`); nothing when blocked or refused."""
        echo = f"Echo from {self.provider} {self.model}: {self.last_user}"
        if self.outcome in ("blocked", "refused") or (self.outcome == "truncated" and self.empty):
            return ""
        if self.outcome == "truncated":
            words = echo.split(" ")
            return " ".join(words[: max(1, len(words) // 2)])
        return echo

    @property
    def input_tokens(self) -> int:
        return sum(_words(t) for t in self.texts)

    @property
    def cached(self) -> int:
        return min(self.cached_tokens, self.input_tokens) if self.outcome == "cached" else 0

    @property
    def thoughts(self) -> int:
        return self.thinking_tokens if self.outcome == "thinking" else 0

    @property
    def output_tokens(self) -> int:
        """The answer's tokens, thinking included (every vendor bills it as output)."""
        truncated_budget = 16 if self.outcome == "truncated" and self.empty else 0
        return _words(self.reply) + self.thoughts + truncated_budget


@dataclass
class StreamPlan:
    """Frames of a stream: `head`, one frame per piece, `tail`; optionally a failure."""

    head: list[bytes]
    pieces: list[bytes]
    tail: list[bytes]
    fail_at: int | None = None  # piece index at which the stream fails
    fail_frame: bytes | None = None  # None: drop the connection
    clean_end: bool = False  # with fail_at: end the body properly, without the vendor's end


# --------------------------------------------------------------------------- vendors


class Vendor:
    """Per-vendor wire format. Subclasses fill in the formatting functions."""

    stream_error_style: ClassVar[str] = "event"
    # kind -> (HTTP status, vendor error code/type, message template)
    errors: ClassVar[dict[str, tuple[int, str, str]]]
    # Mode "status": HTTP status -> (vendor error code/type, message); others answer as 500 does.
    status_errors: ClassVar[dict[int, tuple[str, str]]] = {}

    def __init__(self, name: str) -> None:
        self.name = name  # the provider id it is served for

    def api_key(self, request: Request) -> str | None:
        return _bearer(request)

    def is_stream(self, request: Request, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    def parse(self, request: Request, body: Any, request_id: str) -> Chat:
        raise NotImplementedError

    def system_prompts(self, body: Any) -> list[tuple[str, str]]:
        """(where, text) of every system prompt in a request body, in body order, whether or
        not the vendor accepts it there (the record shows what arrived, and where)."""
        return _role_messages(body, "messages", ("system",))

    def ok_body(self, chat: Chat) -> Any:
        raise NotImplementedError

    def key_region_matches(self, request: Request, key: str) -> bool:
        """A key works only in its own region (DashScope answers another region's key 401
        InvalidApiKey: https://www.alibabacloud.com/help/en/model-studio/regions). Here a key's
        region is the catalogue's region name it contains (`sk-beijing-...`), else the default
        one; the request's is the `/<region>` path segment, else the default one."""
        catalog = load_catalog()
        if not catalog.has_vendor(self.name) or not catalog.regions(self.name):
            return True
        regions = catalog.regions(self.name)
        default = catalog.default_region(self.name)
        home = next((r for r in regions if r in key), default)
        return home == request.path_params.get("region", default)

    def refuse(self, chat: Chat, body: Any) -> tuple[str, str] | None:
        """What today's vendor refuses in a well-formed request, as (error kind, detail); None
        when it accepts it. Every vendor refuses a model the catalogue lists as retired today
        (its shutdown date has come): the id no longer exists."""
        status = load_catalog().status(self.name, chat.model, datetime.now(UTC).date())
        if status is not None and status.status == "retired":
            return "retired", chat.model
        return None

    def stream_plan(self, chat: Chat, parts: list[str]) -> StreamPlan:
        raise NotImplementedError

    def error_body(self, kind: str, status: int, code: str, message: str, request_id: str) -> Any:
        raise NotImplementedError

    def stream_error_frame(self, chat: Chat, seq: int) -> bytes:
        raise NotImplementedError

    def malformed_frame(self) -> bytes:
        return f"data: {MALFORMED_DATA}\n\n".encode()

    def error_headers(self, request_id: str) -> dict[str, str]:
        return {}

    def error(
        self, kind: str, detail: str, request_id: str, options: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        if kind == "status":
            status = options["status"]
            code, template = self.status_errors.get(status, self.errors["server_error"][1:])
        else:
            status, code, template = self.errors[kind]
        retry_after = options["retry_after"]
        message = template.format(detail=detail, retry_after=retry_after or 1)
        headers = self.error_headers(request_id)
        if status == 429 and retry_after is not None and options.get("retry_header", True):
            headers["retry-after"] = str(retry_after)
        return status, self.error_body(kind, status, code, message, request_id), headers


def _openai_messages(body: Any) -> tuple[str, list[dict[str, Any]]]:
    if not isinstance(body, dict):
        raise Invalid("We could not parse the JSON body of your request.")
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise Invalid("you must provide a model parameter")
    if not isinstance(messages, list) or not messages:
        raise Invalid("Missing required parameter: 'messages'.")
    return model, [m for m in messages if isinstance(m, dict)]


def _last_user(messages: Iterable[dict[str, Any]], text_of: Callable[[Any], str]) -> str:
    last = ""
    for message in messages:
        if message.get("role", "user") == "user":
            last = text_of(message)
    return last


class OpenAIVendor(Vendor):
    errors: ClassVar[dict[str, tuple[int, str, str]]] = {
        "missing_key": (
            401,
            "invalid_request_error",
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        ),
        "auth": (
            401,
            "invalid_request_error",
            "Incorrect API key provided: {detail}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
        ),
        "rate_limit": (
            429,
            "requests",
            "Rate limit reached for requests. Please try again in {retry_after}s.",
        ),
        "server_error": (
            500,
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        ),
        "bad_request": (
            400,
            "invalid_request_error",
            "The model `{detail}` does not exist or you do not have access to it.",
        ),
        "invalid": (400, "invalid_request_error", "{detail}"),
        # No credit: a 429 that retrying does not fix
        # (https://platform.openai.com/docs/guides/error-codes).
        "billing": (
            429,
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details.",
        ),
        # A retired id: 404 model_not_found (https://platform.openai.com/docs/guides/error-codes).
        "retired": (
            404,
            "invalid_request_error",
            "The model `{detail}` does not exist or you do not have access to it.",
        ),
        # Reasoning models take only the default temperature
        # (https://developers.openai.com/api/docs/guides/reasoning; VENDORS.md 2026-12-01).
        "temperature": (
            400,
            "invalid_request_error",
            "Unsupported value: 'temperature' does not support {detail} with this model. Only "
            "the default (1) value is supported.",
        ),
        # ... and refuse max_tokens (same guide; openai/types/chat/completion_create_params.py
        # documents max_tokens as "not compatible with o-series models").
        "max_tokens_field": (
            400,
            "invalid_request_error",
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead.",
        ),
    }
    # https://platform.openai.com/docs/guides/error-codes
    status_errors: ClassVar[dict[int, tuple[str, str]]] = {
        403: ("invalid_request_error", "Country, region, or territory not supported"),
        404: ("invalid_request_error", "The model `{detail}` does not exist or you do not have "
                                      "access to it."),
        429: ("requests", "Rate limit reached for requests."),
        503: ("server_error", "The engine is currently overloaded, please try again later"),
    }
    codes: ClassVar[dict[str, str]] = {
        "auth": "invalid_api_key",
        "rate_limit": "rate_limit_exceeded",
        "bad_request": "model_not_found",
        "retired": "model_not_found",
        "billing": "insufficient_quota",
        "temperature": "unsupported_value",
        "max_tokens_field": "unsupported_parameter",
    }
    params: ClassVar[dict[str, str]] = {
        "bad_request": "model", "retired": "model", "temperature": "temperature",
        "max_tokens_field": "max_tokens",
    }
    # Whether the vendor enforces the reasoning-model rules (the Hugging Face router does not).
    reasoning_rules: ClassVar[bool] = True

    def refuse(self, chat: Chat, body: Any) -> tuple[str, str] | None:
        refused = super().refuse(chat, body)
        if refused is not None or not self.reasoning_rules:
            return refused
        caps = load_catalog().capabilities(self.name, chat.model)
        if caps is None or caps.temperature:
            return None
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1:
            return "temperature", str(temperature)
        if "max_tokens" in body:
            return "max_tokens_field", ""
        return None

    def system_prompts(self, body: Any) -> list[tuple[str, str]]:
        # A `developer` or `system` message (openai/types/chat/chat_completion_message_param.py).
        return _role_messages(body, "messages", ("system", "developer"))

    def parse(self, request: Request, body: Any, request_id: str) -> Chat:
        model, messages = _openai_messages(body)
        stream_options = body.get("stream_options") or {}
        return Chat(
            provider=self.name,
            model=model,
            texts=[_text(m.get("content")) for m in messages],
            last_user=_last_user(messages, lambda m: _text(m.get("content"))),
            stream=body.get("stream") is True,
            include_usage=bool(
                isinstance(stream_options, dict) and stream_options.get("include_usage")
            ),
            request_id=request_id,
        )

    def _usage(self, chat: Chat) -> dict[str, Any]:
        # completion_tokens includes reasoning_tokens; prompt_tokens includes cached_tokens
        # (openai/types/completion_usage.py).
        return {
            "prompt_tokens": chat.input_tokens,
            "completion_tokens": chat.output_tokens,
            "total_tokens": chat.input_tokens + chat.output_tokens,
            "prompt_tokens_details": {"cached_tokens": chat.cached},
            "completion_tokens_details": {"reasoning_tokens": chat.thoughts},
        }

    REFUSAL = "I'm sorry, but I can't help with that."

    @staticmethod
    def _finish(chat: Chat) -> str:
        # openai/types/chat/chat_completion.py: stop, length, content_filter, tool_calls.
        return {"truncated": "length", "blocked": "content_filter"}.get(chat.outcome, "stop")

    def ok_body(self, chat: Chat) -> Any:
        return {
            "id": f"chatcmpl-{chat.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None if chat.outcome in ("blocked", "refused") else chat.reply,
                        "refusal": self.REFUSAL if chat.outcome == "refused" else None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": self._finish(chat),
                }
            ],
            "usage": self._usage(chat),
            "system_fingerprint": None,
        }

    def stream_plan(self, chat: Chat, parts: list[str]) -> StreamPlan:
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
            data: dict[str, Any] = {
                "id": f"chatcmpl-{chat.request_id}",
                "object": "chat.completion.chunk",
                "created": created,
                "model": chat.model,
                "system_fingerprint": None,
                "choices": choices,
            }
            if chat.include_usage:
                data["usage"] = usage
            return f"data: {_dumps(data)}\n\n".encode()

        def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

        tail = [chunk(choice({}, self._finish(chat)))]
        if chat.outcome == "refused":
            tail.insert(0, chunk(choice({"refusal": self.REFUSAL})))
        if chat.include_usage:
            tail.append(chunk([], self._usage(chat)))
        tail.append(b"data: [DONE]\n\n")
        return StreamPlan(
            head=[chunk(choice({"role": "assistant", "content": "", "refusal": None}))],
            pieces=[chunk(choice({"content": part})) for part in parts if part],
            tail=tail,
        )

    def error_body(self, kind: str, status: int, code: str, message: str, request_id: str) -> Any:
        return {
            "error": {
                "message": message,
                "type": code,
                "param": self.params.get(kind),
                "code": self.codes.get(kind),
            }
        }

    def stream_error_frame(self, chat: Chat, seq: int) -> bytes:
        _, body, _ = self.error("server_error", "", chat.request_id, DEFAULT_OPTIONS)
        return f"data: {_dumps(body)}\n\n".encode()


class HuggingFaceVendor(OpenAIVendor):
    """The Inference Providers router: OpenAI-compatible; errors in the OpenAI shape."""

    stream_error_style = "close"
    reasoning_rules = False

    def stream_error_frame(self, chat: Chat, seq: int) -> bytes:
        # The router's mid-stream error is a chunk {"error": "...", "error_type": "..."}
        # (VENDORS.md, checked 2026-12-01).
        data = {"error": "Model is overloaded", "error_type": "overloaded"}
        return f"data: {_dumps(data)}\n\n".encode()
    errors: ClassVar[dict[str, tuple[int, str, str]]] = {
        **OpenAIVendor.errors,
        # Exhausted monthly credits: 402 (https://huggingface.co/docs/inference-providers/pricing).
        "billing": (
            402,
            "invalid_request_error",
            "You have exceeded your monthly included credits for Inference Providers. Subscribe "
            "to PRO to get 20x more monthly included credits.",
        ),
        # The router answers a model no provider serves with 400
        # (https://huggingface.co/docs/inference-providers/index).
        "retired": (
            400,
            "invalid_request_error",
            "The requested model '{detail}' is not supported by any provider you have enabled.",
        ),
        "missing_key": (401, "invalid_request_error", "You must provide an access token."),
        "auth": (401, "invalid_request_error", "Invalid credentials in Authorization header"),
        "bad_request": (
            400,
            "invalid_request_error",
            "The requested model '{detail}' is not supported by any provider you have enabled.",
        ),
    }


class ClaudeVendor(Vendor):
    errors: ClassVar[dict[str, tuple[int, str, str]]] = {
        "missing_key": (401, "authentication_error", "x-api-key header is required"),
        "auth": (401, "authentication_error", "invalid x-api-key"),
        "rate_limit": (
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization. "
            "Please retry after {retry_after} seconds.",
        ),
        "server_error": (500, "api_error", "Internal server error"),
        "bad_request": (400, "invalid_request_error", "model: {detail} is not a valid model"),
        "invalid": (400, "invalid_request_error", "{detail}"),
        # A model past its end of life: 404 not_found_error (https://docs.anthropic.com/en/api/
        # errors; dates from anthropic/_data/deprecated_models.py).
        "retired": (404, "not_found_error", "model: {detail}"),
        # https://docs.anthropic.com/en/api/errors: 402 billing_error.
        "billing": (
            402,
            "billing_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits.",
        ),
    }
    # https://docs.anthropic.com/en/api/errors
    status_errors: ClassVar[dict[int, tuple[str, str]]] = {
        403: ("permission_error", "Your API key does not have permission to use the specified "
                                  "resource."),
        404: ("not_found_error", "model: {detail}"),
        429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate "
                                  "limit."),
        503: ("api_error", "Service unavailable"),
        529: ("overloaded_error", "Overloaded"),
    }

    def api_key(self, request: Request) -> str | None:
        return request.headers.get("x-api-key") or _bearer(request)

    def system_prompts(self, body: Any) -> list[tuple[str, str]]:
        top = [("system", _text(body["system"]))] if isinstance(body, dict) and isinstance(
            body.get("system"), str | list) else []
        return top + _role_messages(body, "messages", ("system",))

    # The system prompt is the top-level `system`: a string or a list of text blocks
    # (anthropic/types/message_create_params.py `system: Union[str, Iterable[TextBlockParam]]`,
    # anthropic/types/text_block_param.py). Anything else is 400 invalid_request_error, worded
    # as the API words a field of the wrong type ("<path>: Input should be a valid ...",
    # e.g. https://github.com/anthropics/claude-code/issues/6696); a null or an object `system`
    # is answered "system: Input should be a valid array".
    @staticmethod
    def _check_system(body: dict[str, Any]) -> None:
        if "system" not in body or isinstance(body["system"], str):
            return
        system = body["system"]
        if not isinstance(system, list):
            raise Invalid("system: Input should be a valid array")
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise Invalid(f"system.{i}.type: Input should be 'text'")
            if not isinstance(block.get("text"), str):
                raise Invalid(f"system.{i}.text: Field required")

    # A `role: "system"` message in `messages` (anthropic/types/system_message_param.py): never
    # the first entry ("Use the top-level `system` field for instructions that apply from the
    # very start"), and elsewhere only on the models that take mid-conversation system messages
    # (Claude Opus 4.8 and Opus 5 among them); the others (Sonnet 5, Haiku 4.5, Opus 4.7 and
    # older) answer 400 invalid_request_error "role 'system' is not supported on this model"
    # (https://platform.claude.com/docs/en/build-with-claude/mid-conversation-system-messages,
    # https://platform.claude.com/docs/en/about-claude/models/whats-new-claude-4-8). The fake
    # serves every model as one of the others, on purpose: the service sends its one system
    # prompt in `system`, never as a message. The first-entry wording is the API's own
    # (https://github.com/Maol-1997/cursor-claude-connector/issues/3).
    SYSTEM_FIRST = ('messages: Unexpected role "system". The Messages API accepts a top-level '
                    '`system` parameter, not "system" as an input message role.')
    SYSTEM_ROLE = "role 'system' is not supported on this model"

    def parse(self, request: Request, body: Any, request_id: str) -> Chat:
        if not isinstance(body, dict):
            raise Invalid("Request body is not valid JSON.")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            raise Invalid("model: Field required")
        if not isinstance(body.get("max_tokens"), int):
            raise Invalid("max_tokens: Field required")
        if not isinstance(messages, list) or not messages:
            raise Invalid("messages: Field required")
        messages = [m for m in messages if isinstance(m, dict)]
        for i, message in enumerate(messages):
            if message.get("role") == "system":
                raise Invalid(self.SYSTEM_FIRST if i == 0 else self.SYSTEM_ROLE)
        self._check_system(body)
        texts = [_text(m.get("content")) for m in messages]
        if body.get("system") is not None:
            texts.insert(0, _text(body["system"]))
        return Chat(
            provider=self.name,
            model=model,
            texts=texts,
            last_user=_last_user(messages, lambda m: _text(m.get("content"))),
            stream=body.get("stream") is True,
            request_id=request_id,
        )

    def _message(self, chat: Chat, content: list[Any], stop: str | None, out: int) -> Any:
        return {
            "id": f"msg_{chat.request_id}",
            "type": "message",
            "role": "assistant",
            "model": chat.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": self._usage(chat, out),
        }

    @staticmethod
    def _usage(chat: Chat, out: int) -> dict[str, int]:
        # input_tokens excludes cache reads and writes (anthropic/types/usage.py); thinking is
        # part of output_tokens.
        return {"input_tokens": chat.input_tokens - chat.cached, "output_tokens": out,
                "cache_read_input_tokens": chat.cached, "cache_creation_input_tokens": 0}

    @staticmethod
    def _stop(chat: Chat) -> str:
        # anthropic/types/stop_reason.py: end_turn, max_tokens, stop_sequence, tool_use,
        # pause_turn, refusal.
        if chat.outcome in ("blocked", "refused"):
            return "refusal"
        return "max_tokens" if chat.outcome == "truncated" else "end_turn"

    def ok_body(self, chat: Chat) -> Any:
        content = [{"type": "text", "text": chat.reply}] if chat.reply else []
        return self._message(chat, content, self._stop(chat), chat.output_tokens)

    @staticmethod
    def _event(name: str, **data: Any) -> bytes:
        return f"event: {name}\ndata: {_dumps({'type': name, **data})}\n\n".encode()

    def stream_plan(self, chat: Chat, parts: list[str]) -> StreamPlan:
        ev = self._event
        # message_delta usage is cumulative: the final output_tokens (and input_tokens).
        usage = self._usage(chat, chat.output_tokens)
        stop = {"stop_reason": self._stop(chat), "stop_sequence": None}
        return StreamPlan(
            head=[
                ev("message_start", message=self._message(chat, [], None, 1)),
                ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
                ev("ping"),
            ],
            pieces=[
                ev("content_block_delta", index=0, delta={"type": "text_delta", "text": part})
                for part in parts if part
            ],
            tail=[
                ev("content_block_stop", index=0),
                ev("message_delta", delta=stop, usage=usage),
                ev("message_stop"),
            ],
        )

    def error_body(self, kind: str, status: int, code: str, message: str, request_id: str) -> Any:
        return {
            "type": "error",
            "error": {"type": code, "message": message},
            "request_id": f"req_{request_id}",
        }

    def error_headers(self, request_id: str) -> dict[str, str]:
        return {"request-id": f"req_{request_id}"}

    def stream_error_frame(self, chat: Chat, seq: int) -> bytes:
        return self._event("error", error={"type": "overloaded_error", "message": "Overloaded"})

    def malformed_frame(self) -> bytes:
        return f"event: content_block_delta\ndata: {MALFORMED_DATA}\n\n".encode()


class GeminiVendor(Vendor):
    errors: ClassVar[dict[str, tuple[int, str, str]]] = {
        "missing_key": (
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity)."
            " Please use API Key or other form of API consumer identity to call this API.",
        ),
        "auth": (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
        "rate_limit": (
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details."
            " Please retry in {retry_after}s.",
        ),
        "server_error": (
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        ),
        "bad_request": (
            400,
            "INVALID_ARGUMENT",
            "models/{detail} is not found for this API version, or is not supported for "
            "generateContent.",
        ),
        "invalid": (400, "INVALID_ARGUMENT", "{detail}"),
        # A free tier used up: 429 RESOURCE_EXHAUSTED, a quota like any other
        # (https://ai.google.dev/gemini-api/docs/rate-limits).
        "billing": (
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
        ),
        # A shut-down model: 404 NOT_FOUND
        # (https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes).
        "retired": (
            404,
            "NOT_FOUND",
            "models/{detail} is not found for API version v1beta, or is not supported for "
            "generateContent. Call ListModels to see the list of available models and their "
            "supported methods.",
        ),
    }
    # https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes
    status_errors: ClassVar[dict[int, tuple[str, str]]] = {
        403: ("PERMISSION_DENIED", "The caller does not have permission"),
        404: ("NOT_FOUND", "Requested entity was not found."),
        429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    }

    def api_key(self, request: Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query_params.get("key")

    # A content's role is "user" or "model", or left out (https://ai.google.dev/api/caching#Content:
    # "Must be either 'user' or 'model'"); any other is 400 INVALID_ARGUMENT "Please use a valid
    # role: user, model." (the API's own answer, e.g. a "system" content). The system prompt is
    # `systemInstruction`, a Content (https://ai.google.dev/api/generate-content#request-body):
    # anything else, a bare string for one, is 400 INVALID_ARGUMENT "Invalid value at
    # 'system_instruction' (...Content)".
    ROLES: ClassVar[frozenset[str | None]] = frozenset({"user", "model", "", None})

    def system_prompts(self, body: Any) -> list[tuple[str, str]]:
        system = body.get("systemInstruction") if isinstance(body, dict) else None
        top = [("systemInstruction", _text(system))] if system is not None else []
        return top + _role_messages(body, "contents", ("system",))

    @staticmethod
    def _target(request: Request) -> tuple[str, str]:
        target = request.path_params.get("target", "")
        resource, _, action = target.rpartition(":")
        return resource.removeprefix("models/"), action

    def is_stream(self, request: Request, body: Any) -> bool:
        return self._target(request)[1] == "streamGenerateContent"

    def parse(self, request: Request, body: Any, request_id: str) -> Chat:
        model, action = self._target(request)
        if action not in ("generateContent", "streamGenerateContent") or not model:
            raise Invalid(f"Method not found: {request.url.path}")
        if not isinstance(body, dict):
            raise Invalid("Invalid JSON payload received.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise Invalid("* GenerateContentRequest.contents: contents is not specified")
        contents = [c for c in contents if isinstance(c, dict)]
        for content in contents:
            if content.get("role") not in self.ROLES:
                raise Invalid("Please use a valid role: user, model.")
        texts = [_text(c.get("parts")) for c in contents]
        system = body.get("systemInstruction")
        if system is not None:
            if not isinstance(system, dict) or not isinstance(system.get("parts"), list):
                version = request.path_params.get("api_version", "v1beta")
                raise Invalid(
                    "Invalid value at 'system_instruction' (type.googleapis.com/google.ai."
                    f"generativelanguage.{version}.Content), {_dumps(system)}")
            texts.insert(0, _text(system))
        return Chat(
            provider=self.name,
            model=model,
            texts=texts,
            last_user=_last_user(contents, lambda c: _text(c.get("parts"))),
            stream=action == "streamGenerateContent",
            sse=request.query_params.get("alt") == "sse",
            request_id=request_id,
        )

    def _chunk(self, chat: Chat, text: str, last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": [{"text": text}] if text else []},
            "index": 0,
        }
        data: dict[str, Any] = {"candidates": [candidate]}
        if chat.outcome == "blocked":
            # A blocked prompt: HTTP 200, no candidates, promptFeedback.blockReason
            # (https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse).
            data = {"promptFeedback": {"blockReason": "SAFETY"}}
        if last:
            # finishReason SAFETY: the answer was blocked; MAX_TOKENS: cut at the limit
            # (google/genai/types.py FinishReason).
            candidate["finishReason"] = {"refused": "SAFETY",
                                         "truncated": "MAX_TOKENS"}.get(chat.outcome, "STOP")
            # promptTokenCount includes cachedContentTokenCount; thoughtsTokenCount is billed
            # as output beside candidatesTokenCount (GenerateContentResponseUsageMetadata).
            answer = chat.output_tokens - chat.thoughts
            data["usageMetadata"] = {
                "promptTokenCount": chat.input_tokens,
                "candidatesTokenCount": answer,
                "totalTokenCount": chat.input_tokens + chat.output_tokens,
            }
            if chat.thoughts:
                data["usageMetadata"]["thoughtsTokenCount"] = chat.thoughts
            if chat.cached:
                data["usageMetadata"]["cachedContentTokenCount"] = chat.cached
        data["modelVersion"] = chat.model
        data["responseId"] = chat.request_id
        return data

    def ok_body(self, chat: Chat) -> Any:
        if chat.stream:  # streamGenerateContent without alt=sse: a JSON array of chunks
            return [self._chunk(chat, chat.reply, last=True)]
        return self._chunk(chat, chat.reply, last=True)

    def stream_plan(self, chat: Chat, parts: list[str]) -> StreamPlan:
        parts = [part for part in parts if part] or [""]
        frames = [
            f"data: {_dumps(self._chunk(chat, part, i == len(parts) - 1))}\n\n".encode()
            for i, part in enumerate(parts)
        ]
        return StreamPlan(head=[], pieces=frames, tail=[])

    def error_body(self, kind: str, status: int, code: str, message: str, request_id: str) -> Any:
        error: dict[str, Any] = {"code": status, "message": message, "status": code}
        if kind == "auth":
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ]
        return {"error": error}

    def error(
        self, kind: str, detail: str, request_id: str, options: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        status, body, headers = super().error(kind, detail, request_id, options)
        if status == 429 and options["retry_after"] is not None:
            body["error"]["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{options['retry_after']}s",
                }
            ]
        return status, body, headers

    def stream_error_frame(self, chat: Chat, seq: int) -> bytes:
        _, body, _ = self.error("server_error", "", chat.request_id, DEFAULT_OPTIONS)
        return f"data: {_dumps(body)}\n\n".encode()


class QwenVendor(Vendor):
    errors: ClassVar[dict[str, tuple[int, str, str]]] = {
        "missing_key": (401, "InvalidApiKey", "No API-key provided."),
        "auth": (401, "InvalidApiKey", "Invalid API-key provided."),
        "rate_limit": (429, "Throttling", "Requests rate limit exceeded, please try again later."),
        "server_error": (
            500,
            "InternalError",
            "An internal error has occured, please try again later or contact service support.",
        ),
        "bad_request": (400, "InvalidParameter", "Model not exist."),
        "invalid": (400, "InvalidParameter", "{detail}"),
        # https://www.alibabacloud.com/help/en/model-studio/error-code: an unknown or withdrawn
        # model is 400 InvalidParameter "Model not exist."
        "retired": (400, "InvalidParameter", "Model not exist."),
        # An overdue account: 400 Arrearage
        # (https://www.alibabacloud.com/help/en/model-studio/error-code).
        "billing": (400, "Arrearage",
                    "Access denied, please make sure your account is in good standing."),
        # Content moderation refuses the request: 400 DataInspectionFailed
        # (https://www.alibabacloud.com/help/en/model-studio/error-code).
        "moderated": (400, "DataInspectionFailed",
                      "Input or output data may contain inappropriate content."),
        # Qwen3 open models think by default and refuse a non-streaming call that does not
        # turn thinking off (https://www.alibabacloud.com/help/en/model-studio/deep-thinking).
        "thinking": (
            400,
            "InvalidParameter",
            "parameter.enable_thinking must be set to false for non-streaming calls",
        ),
    }
    # https://www.alibabacloud.com/help/en/model-studio/error-code
    status_errors: ClassVar[dict[int, tuple[str, str]]] = {
        403: ("AccessDenied", "Access denied."),
        404: ("ModelNotFound", "Model can not be found."),
        429: ("Throttling", "Requests throttling triggered."),
        503: ("ServiceUnavailable", "Service is temporarily unavailable."),
    }

    def system_prompts(self, body: Any) -> list[tuple[str, str]]:
        payload = body.get("input") if isinstance(body, dict) else None
        return _role_messages(payload, "messages", ("system",), prefix="input.")

    def is_stream(self, request: Request, body: Any) -> bool:
        sse = request.headers.get("x-dashscope-sse", "").lower() == "enable"
        return sse or "text/event-stream" in request.headers.get("accept", "")

    def parse(self, request: Request, body: Any, request_id: str) -> Chat:
        if not isinstance(body, dict):
            raise Invalid("Request body is not valid JSON.")
        model, payload = body.get("model"), body.get("input")
        params = body.get("parameters") or {}
        if not isinstance(model, str) or not model:
            raise Invalid("Model not specified.")
        if not isinstance(payload, dict) or not isinstance(params, dict):
            raise Invalid("input must contain messages or prompt")
        messages = payload.get("messages")
        if isinstance(messages, list) and messages:
            messages = [m for m in messages if isinstance(m, dict)]
        elif isinstance(payload.get("prompt"), str):
            messages = [{"role": "user", "content": payload["prompt"]}]
        else:
            raise Invalid("Either messages or prompt must be provided in input.")
        return Chat(
            provider=self.name,
            model=model,
            texts=[_text(m.get("content")) for m in messages],
            last_user=_last_user(messages, lambda m: _text(m.get("content"))),
            stream=self.is_stream(request, body),
            incremental=params.get("incremental_output") is True,
            message_format=params.get("result_format") == "message",
            request_id=request_id,
        )

    def refuse(self, chat: Chat, body: Any) -> tuple[str, str] | None:
        refused = super().refuse(chat, body)
        if refused is not None or chat.stream:
            return refused
        caps = load_catalog().capabilities(self.name, chat.model)
        reasoning = caps.reasoning if caps is not None else None
        thinks = reasoning is not None and reasoning.non_streaming_requires is False
        if thinks and (body.get("parameters") or {}).get("enable_thinking") is not False:
            return "thinking", ""
        return None

    def _body(self, chat: Chat, text: str, finish: str, output_tokens: int) -> dict[str, Any]:
        if chat.message_format:
            choice = {"finish_reason": finish, "message": {"role": "assistant", "content": text}}
            output: dict[str, Any] = {"choices": [choice]}
        else:  # result_format "text"
            output = {"text": text, "finish_reason": finish}
        usage: dict[str, Any] = {
            "input_tokens": chat.input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": chat.input_tokens + output_tokens,
        }
        if chat.cached:  # DashScope's context cache: part of input_tokens
            usage["prompt_tokens_details"] = {"cached_tokens": chat.cached}
        return {"output": output, "usage": usage, "request_id": chat.request_id}

    @staticmethod
    def _finish(chat: Chat) -> str:
        return "length" if chat.outcome == "truncated" else "stop"

    def ok_body(self, chat: Chat) -> Any:
        return self._body(chat, chat.reply, self._finish(chat), chat.output_tokens)

    @staticmethod
    def _frame(seq: int, event: str, status: int, data: str) -> bytes:
        return f"id:{seq}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n".encode()

    def stream_plan(self, chat: Chat, parts: list[str]) -> StreamPlan:
        frames, so_far = [], ""
        for i, part in enumerate(parts):
            so_far += part
            # DashScope sends the *string* "null" while the answer is still growing; usage is
            # cumulative in every event.
            finish = self._finish(chat) if i == len(parts) - 1 else "null"
            text = part if chat.incremental else so_far
            out = chat.output_tokens if i == len(parts) - 1 else _words(so_far)
            body = self._body(chat, text, finish, out)
            frames.append(self._frame(i + 1, "result", 200, _dumps(body)))
        return StreamPlan(head=[], pieces=frames, tail=[])

    def error_body(self, kind: str, status: int, code: str, message: str, request_id: str) -> Any:
        return {"code": code, "message": message, "request_id": request_id}

    def stream_error_frame(self, chat: Chat, seq: int) -> bytes:
        status, body, _ = self.error("server_error", "", chat.request_id, DEFAULT_OPTIONS)
        return self._frame(seq, "error", status, _dumps(body))

    def malformed_frame(self) -> bytes:
        return self._frame(1, "result", 200, MALFORMED_DATA)


FAKES_BY_WIRE: dict[str, type[Vendor]] = {
    "openai": OpenAIVendor, "gemini": GeminiVendor, "claude": ClaudeVendor, "qwen": QwenVendor,
}
# Vendors whose answers differ from their wire format's fake.
FAKES_BY_ID: dict[str, type[Vendor]] = {"huggingface": HuggingFaceVendor}


def fake_vendors() -> dict[str, Vendor]:
    """A fake for every vendor registered now."""
    return {
        id_: FAKES_BY_ID.get(id_, FAKES_BY_WIRE[spec.wire])(id_) for id_, spec in SPECS.items()
    }


def base_path(provider: str) -> str:
    return f"/{provider}{WIRE_PATHS[SPECS[provider].wire][0]}"


# --------------------------------------------------------------------------- responses


async def _wait_disconnect(receive: Receive) -> float:
    """Wait for the client to go away; return when that was seen (time.time())."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return time.time()


async def _cancel(*tasks: asyncio.Future[Any]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class JSONBodyResponse(Response):
    """A complete JSON (or deliberately broken) answer; records status and finish time."""

    def __init__(
        self,
        state: _State,
        record: RecordedRequest,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        content = raw if raw is not None else _dumps(body).encode()
        super().__init__(content, status, headers, media_type="application/json")
        self._state, self._record = state, record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._state.update(self._record, status=self.status_code)
        await super().__call__(scope, receive, send)
        self._state.update(self._record, finished_at=time.time())


class StreamResponse(Response):
    """Sends a StreamPlan as an event stream, watching for the client going away meanwhile."""

    def __init__(
        self,
        state: _State,
        record: RecordedRequest,
        plan: StreamPlan,
        delay: float,
        media_type: str = "text/event-stream",
    ) -> None:
        # No Response.__init__: without a body, no content-length (chunked transfer instead).
        self.status_code, self.media_type, self.background = 200, media_type, None
        self.init_headers({"cache-control": "no-cache"})
        self._state, self._record, self._plan, self._delay = state, record, plan, delay

    async def _produce(self, send: Send) -> bool:
        """Send the frames; False if the stream must end abruptly (no closing chunk)."""

        async def emit(frame: bytes) -> None:
            await send({"type": "http.response.body", "body": frame, "more_body": True})

        plan = self._plan
        for frame in plan.head:
            await emit(frame)
        pieces = plan.pieces if plan.fail_at is None else plan.pieces[: plan.fail_at]
        for index, frame in enumerate(pieces):
            if index and await self._state.pause(self._delay):
                return False  # the server is stopping
            await emit(frame)
        if plan.fail_at is None:
            for frame in plan.tail:
                await emit(frame)
            return True
        if plan.clean_end:
            return True
        if await self._state.pause(self._delay) or plan.fail_frame is None:
            return False
        await emit(plan.fail_frame)
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._state.update(self._record, status=200)
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        producer = asyncio.ensure_future(self._produce(send))
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await _cancel(producer, watcher)
            raise
        if not watcher.done():
            await asyncio.sleep(0)  # sends after a disconnect are no-ops: let the watcher see it
        if watcher.done() and not watcher.cancelled():
            self._state.update(self._record, disconnected_at=watcher.result())
            await _cancel(producer)
            return
        await _cancel(watcher)
        if producer.result():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        # else: return without the closing chunk; uvicorn then drops the connection (and logs
        # "ASGI callable returned without completing response.").
        self._state.update(self._record, finished_at=time.time())


class HangResponse(Response):
    """Answers nothing until the client leaves, the server stops or the bound passes."""

    def __init__(
        self, state: _State, record: RecordedRequest, bound: float, fallback: Response
    ) -> None:
        super().__init__(None, 200)
        self._state, self._record, self._bound, self._fallback = state, record, bound, fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        stopper = asyncio.ensure_future(self._state.shutdown.wait())
        try:
            await asyncio.wait(
                {watcher, stopper}, timeout=self._bound, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            await _cancel(*(t for t in (watcher, stopper) if not t.done()))
        if watcher.done() and not watcher.cancelled():
            self._state.update(self._record, disconnected_at=watcher.result())
        elif stopper.done() and not stopper.cancelled():
            await Response("fake vendor is stopping", 503)(scope, receive, send)
        else:
            await self._fallback(scope, receive, send)


# --------------------------------------------------------------------------- application


async def _vendor_request(state: _State, vendor: Vendor, request: Request) -> Response:
    raw = await request.body()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = None
    record = state.add(
        provider=vendor.name,
        method=request.method,
        path=request.url.path,
        query=dict(request.query_params),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        received_at=time.time(),
        stream=vendor.is_stream(request, body),
        system_prompts=vendor.system_prompts(body),
    )
    mode, options = state.choose(vendor.name)
    state.update(record, mode=mode)
    request_id = f"fake{record.seq:06d}"

    def fail(kind: str, detail: str = "") -> Response:
        status, err, headers = vendor.error(kind, detail, request_id, options)
        if isinstance(vendor, QwenVendor) and record.stream:
            # DashScope answers a streaming call's error as an SSE body
            # (https://www.alibabacloud.com/help/en/model-studio/error-code).
            raw = QwenVendor._frame(1, "error", status, _dumps(err))
            headers = {**headers, "content-type": "text/event-stream;charset=UTF-8"}
            return JSONBodyResponse(state, record, status, err, headers, raw=raw)
        return JSONBodyResponse(state, record, status, err, headers)

    if mode == "hang":
        return HangResponse(state, record, options["hang_seconds"], fail("server_error"))
    key = vendor.api_key(request)
    if not key:
        return fail("missing_key")
    if mode == "auth" or key.startswith(BAD_KEY_PREFIX) or not vendor.key_region_matches(
            request, key):
        masked = f"{key[:4]}{'*' * 8}{key[-4:]}" if len(key) > 8 else key
        return fail("auth", masked)
    if mode in ("rate_limit", "server_error", "status", "billing"):
        return fail(mode)
    try:
        chat = vendor.parse(request, body, request_id)
    except Invalid as exc:
        return fail("invalid", str(exc))
    if mode == "bad_request":
        return fail("bad_request", chat.model)
    refused = vendor.refuse(chat, body)
    if refused is not None:
        return fail(*refused)
    if mode == "echo_key":
        half = len(key) // 2
        echoed = base64.b64encode(key.encode()).decode()
        return fail("invalid", f"Key {key.upper()} ({echoed}) is not valid here: "
                               f"{key[:half]} {key[half:]}")
    if mode in ANSWER_MODES:
        if isinstance(vendor, QwenVendor) and mode in ("blocked", "refused"):
            return fail("moderated")
        chat = dataclasses.replace(
            chat, outcome=mode, empty=bool(options["empty"]),
            thinking_tokens=options["thinking_tokens"], cached_tokens=options["cached_tokens"],
        )
    if mode == "oversized":
        chat = dataclasses.replace(chat, last_user=chat.last_user + "x" * options["oversize_bytes"])
    if not chat.stream or not chat.sse:
        if mode == "malformed":
            return JSONBodyResponse(state, record, 200, None, raw=MALFORMED_BODY)
        return JSONBodyResponse(state, record, 200, vendor.ok_body(chat))
    if mode == "malformed":
        plan = StreamPlan(head=[], pieces=[vendor.malformed_frame()], tail=[])
    else:
        plan = vendor.stream_plan(chat, _split(chat.reply, options["pieces"]))
    if mode == "stream_error":
        style = options["stream_error_style"] or vendor.stream_error_style
        plan.fail_at = options["error_after"]
        if style == "event":
            plan.fail_frame = vendor.stream_error_frame(chat, plan.fail_at + 1)
        plan.clean_end = style == "end"
    return StreamResponse(state, record, plan, options["delay"])


# Each vendor's list-models endpoint (after /<id>) and its answer's shape, by wire format:
# OpenAI GET /v1/models (https://platform.openai.com/docs/api-reference/models/list), Claude
# GET /v1/models (https://docs.anthropic.com/en/api/models-list), Gemini GET /v1beta/models
# (https://ai.google.dev/api/models#method:-models.list), DashScope's OpenAI-compatible GET
# /compatible-mode/v1/models (https://www.alibabacloud.com/help/en/model-studio/compatibility-of-openai-with-dashscope).
MODELS_PATHS: dict[str, str] = {
    "openai": "/v1/models", "claude": "/v1/models", "gemini": "/{api_version}/models",
    "qwen": "/compatible-mode/v1/models",
}


def models_answer(provider: str) -> Any:
    catalog = load_catalog()
    ids = ([m.id for m in catalog.models(provider) if m.status != "retired"]
           if catalog.has_vendor(provider) else [SPECS[provider].default_model])
    wire = SPECS[provider].wire
    if wire == "gemini":
        return {"models": [{"name": f"models/{i}", "displayName": i,
                            "supportedGenerationMethods": ["generateContent"]} for i in ids]}
    if wire == "claude":
        return {"data": [{"id": i, "type": "model", "display_name": i} for i in ids],
                "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
    return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": provider}
                                       for i in ids]}


async def _models_request(state: _State, vendor: Vendor, request: Request) -> Response:
    record = state.add(
        provider=vendor.name, method=request.method, path=request.url.path,
        query=dict(request.query_params),
        headers={k.lower(): v for k, v in request.headers.items()}, body=None,
        received_at=time.time(),
    )
    mode, options = state.choose(vendor.name)
    state.update(record, mode=mode)
    request_id = f"fake{record.seq:06d}"

    def fail(kind: str, detail: str = "") -> Response:
        status, err, headers = vendor.error(kind, detail, request_id, options)
        return JSONBodyResponse(state, record, status, err, headers)

    if mode == "hang":
        return HangResponse(state, record, options["hang_seconds"], fail("server_error"))
    key = vendor.api_key(request)
    if not key:
        return fail("missing_key")
    if mode == "auth" or key.startswith(BAD_KEY_PREFIX) or not vendor.key_region_matches(
            request, key):
        return fail("auth", key[:4])
    if mode in ("rate_limit", "server_error", "status", "billing"):
        return fail(mode)
    return JSONBodyResponse(state, record, 200, models_answer(vendor.name))


def _json(data: Any, status: int = 200) -> Response:
    return Response(_dumps(data), status, media_type="application/json")


def create_app(state: _State, vendors: dict[str, Vendor]) -> Starlette:
    """The Starlette app: vendor routes plus the /_fake/ control routes."""

    def route(provider: str) -> Route:
        vendor = vendors[provider]
        path = f"/{provider}{WIRE_PATHS[SPECS[provider].wire][1]}"

        async def endpoint(request: Request) -> Response:
            return await _vendor_request(state, vendor, request)

        return Route(path, endpoint, methods=["POST"], name=provider)

    def regional_routes(provider: str) -> list[Route]:
        """A vendor with regions in the catalogue is also served under `/<id>/<region>` (the
        service's convention behind a test double); a key works only in its own region."""
        catalog = load_catalog()
        if not catalog.has_vendor(provider) or not catalog.regions(provider):
            return []
        vendor = vendors[provider]
        path = f"/{provider}/{{region}}{WIRE_PATHS[SPECS[provider].wire][1]}"

        async def endpoint(request: Request) -> Response:
            return await _vendor_request(state, vendor, request)

        listing = f"/{provider}/{{region}}{MODELS_PATHS[SPECS[provider].wire]}"

        async def models(request: Request) -> Response:
            return await _models_request(state, vendor, request)

        return [Route(path, endpoint, methods=["POST"], name=f"{provider}-regional"),
                Route(listing, models, methods=["GET"], name=f"{provider}-regional-models")]

    def models_route(provider: str) -> Route:
        vendor = vendors[provider]

        async def endpoint(request: Request) -> Response:
            return await _models_request(state, vendor, request)

        path = f"/{provider}{MODELS_PATHS[SPECS[provider].wire]}"
        return Route(path, endpoint, methods=["GET"], name=f"{provider}-models")

    async def set_behaviour(request: Request) -> Response:
        try:
            data = json.loads(await request.body())
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            mode = data.pop("mode", None)
            provider = data.pop("provider", None)
            times = data.pop("times", None)
            state.set_behaviour(mode, provider, times, data)
        except ValueError as exc:  # also json.JSONDecodeError
            return _json({"error": str(exc)}, 400)
        return _json({"behaviours": state.behaviours()})

    async def get_behaviour(request: Request) -> Response:
        return _json({"behaviours": state.behaviours()})

    async def reset(request: Request) -> Response:
        state.reset()
        return _json({"reset": True})

    async def requests(request: Request) -> Response:
        provider = request.query_params.get("provider")
        return _json([r.to_dict() for r in state.records(provider)])

    return Starlette(
        routes=[
            *(route(provider) for provider in vendors),
            *(models_route(provider) for provider in vendors),
            *(r for provider in vendors for r in regional_routes(provider)),
            Route("/_fake/behaviour", set_behaviour, methods=["POST"]),
            Route("/_fake/behaviour", get_behaviour, methods=["GET"]),
            Route("/_fake/reset", reset, methods=["POST"]),
            Route("/_fake/requests", requests, methods=["GET"]),
        ]
    )


# --------------------------------------------------------------------------- server


class FakeVendor:
    """The fake vendor server, run by uvicorn in a background thread on 127.0.0.1.

    `pieces`, `delay`, `retry_after` and `hang_seconds` are the default behaviour options.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        pieces: int = DEFAULT_OPTIONS["pieces"],
        delay: float = DEFAULT_OPTIONS["delay"],
        retry_after: float = DEFAULT_OPTIONS["retry_after"],
        hang_seconds: float = DEFAULT_OPTIONS["hang_seconds"],
        log_level: str = "warning",
        standalone_logging: bool = False,
    ) -> None:
        self.port = port
        self._log_level = log_level
        self._standalone_logging = standalone_logging
        defaults = {
            **DEFAULT_OPTIONS,
            "pieces": pieces,
            "delay": delay,
            "retry_after": retry_after,
            "hang_seconds": hang_seconds,
        }
        self.vendors = fake_vendors()
        self._state = _State(check_options(defaults), tuple(self.vendors))
        self.app = create_app(self._state, self.vendors)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # lifecycle ---------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FakeVendor:
        """Serve in a background thread; return once the socket listens."""
        if self._thread is not None:
            raise RuntimeError("FakeVendor already started")
        config = uvicorn.Config(
            self.app,
            host=HOST,
            port=self.port,
            log_level=self._log_level,
            # In-process: leave the test runner's logging alone (no dictConfig).
            log_config=uvicorn.config.LOGGING_CONFIG if self._standalone_logging else None,
            access_log=self._standalone_logging,
            lifespan="off",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        self._server = server = uvicorn.Server(config)
        self._state.shutdown = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="fake-vendor", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._thread = None
                raise RuntimeError(f"fake vendor did not start on {HOST}:{self.port}")
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def _run(self) -> None:
        assert self._server is not None
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._server.serve())
        finally:
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; hanging requests are released (answered 503)."""
        if self._thread is None or self._server is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._state.shutdown.set)
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._thread = self._server = self._loop = None

    def __enter__(self) -> FakeVendor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # addresses ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def base_url(self, provider: str) -> str:
        """The base URL to give that vendor's SDK (or the service's LLM_*_BASE_URL)."""
        if provider not in self.vendors:
            raise ValueError(f"unknown provider {provider!r}; known: {list(self.vendors)}")
        return self.url + base_path(provider)

    def env(self) -> dict[str, str]:
        """LLM_<PROVIDER>_BASE_URL settings pointing the service at this fake."""
        return {f"LLM_{p.upper()}_BASE_URL": self.base_url(p) for p in self.vendors}

    # control -----------------------------------------------------------------

    def set_behaviour(
        self, mode: str, provider: str | None = None, times: int | None = None, **options: Any
    ) -> None:
        """Set `mode` for `provider` (or all), for the next `times` requests (or until changed)."""
        self._state.set_behaviour(mode, provider, times, options)

    def reset(self) -> None:
        """Back to `ok` everywhere and forget recorded requests."""
        self._state.reset()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshots of every recorded vendor request, oldest first."""
        return self._state.records()

    def requests_for(self, provider: str) -> list[RecordedRequest]:
        return self._state.records(provider)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.vendor", description="Fake LLM vendor server (127.0.0.1)."
    )
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--pieces", type=int, default=DEFAULT_OPTIONS["pieces"])
    parser.add_argument("--delay", type=float, default=DEFAULT_OPTIONS["delay"])
    parser.add_argument("--retry-after", type=float, default=DEFAULT_OPTIONS["retry_after"])
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    retry_after = float(args.retry_after)
    retry_after = int(retry_after) if retry_after.is_integer() else retry_after
    fake = FakeVendor(
        port=args.port,
        pieces=args.pieces,
        delay=args.delay,
        retry_after=retry_after,
        log_level=args.log_level,
        standalone_logging=True,
    )
    fake.start()
    for name, value in fake.env().items():
        print(f"{name}={value}", flush=True)
    print(f"# control: {fake.url}/_fake/behaviour, /_fake/requests, /_fake/reset", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
