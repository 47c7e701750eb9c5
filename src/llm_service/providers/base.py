"""The provider interface every vendor adapter implements, and the one error type they raise.

An adapter turns a `ChatRequest` (the context and the new message, in our roles) into the vendor's
wire format, calls it through the shared HTTP pool with the user's `Credentials` (key and
endpoint, an argument of each call, never state of the adapter), and returns a `Completion` with
token usage. Everything vendor-specific stays in its module: role mapping, response parsing, and
turning the vendor's failures into `ProviderError` in one place used by both call paths.

What a broken stream means is defined here once, for every adapter: a stream that ends before the
vendor's end marker is `stream_cut()`, a chunk that cannot be read is `unreadable_chunk()`, and an
error the vendor sends inside the stream is `stream_error_event(...)`.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import math
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from types import ModuleType
from typing import Any, Literal

import httpx2

from llm_service.catalog import Capabilities, Catalog, load_catalog
from llm_service.heap import freeze_long_lived
from llm_service.jsonutil import loads

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: Sequence[ChatTurn]  # the context, oldest first, then the new user message
    temperature: float
    max_tokens: int
    # The configuration's region (the catalogue's name): the registry picks the endpoint.
    region: str | None = None
    # The one system prompt of the call, which each adapter puts in its vendor's native place;
    # never a turn of `messages`.
    system: str | None = None


# Why an answer ended, as the service reports it: "stop" (the model finished) or "length" (cut
# at maxTokens). A blocked or refused answer is not a Completion: it is `refused(...)`.
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str | None  # as the vendor reports it, when it does
    input_tokens: int  # every prompt token, cached ones included
    output_tokens: int  # every billed output token, reasoning/thinking included
    finish_reason: FinishReason = "stop"
    cached_input_tokens: int = 0  # the part of input_tokens read from the vendor's cache


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """A piece of the answer, as the vendor sent it."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamUsage:
    """Token usage (and the model) as a vendor's stream reports it; None where it does not.
    Vendors report in parts (Claude: input first, output at the end): later values win."""

    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: FinishReason | None = None
    cached_input_tokens: int | None = None


StreamEvent = StreamDelta | StreamUsage


class FailureKind(StrEnum):
    AUTH = "auth"  # the vendor rejected the key
    BAD_REQUEST = "bad_request"  # the vendor refused the request (model, length...)
    RATE_LIMITED = "rate_limited"  # the vendor's rate limit or quota
    UPSTREAM = "upstream"  # vendor 5xx or a connection failure: worth a retry
    MALFORMED = "malformed"  # an answer we cannot read: not retried
    TIMEOUT = "timeout"
    REFUSED = "refused"  # the vendor declined to answer (blocked prompt, safety, refusal)
    EMPTY = "empty"  # the token limit was used up (by thinking) before any text


class ProviderError(Exception):
    """A vendor call failed. `detail` is the vendor's own reason, already scrubbed of keys."""

    def __init__(
        self,
        kind: FailureKind,
        *,
        status: int | None = None,
        detail: str | None = None,
        retry_after_s: int | None = None,
        billing: bool = False,
    ) -> None:
        super().__init__(f"{kind}: status {status}")
        self.kind = kind
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s
        # The account has no credit or its plan does not cover the call (OpenAI
        # insufficient_quota, Anthropic billing_error, DashScope Arrearage, Hugging Face 402):
        # retrying or fixing the model does not help; adding credit does.
        self.billing = billing

    @property
    def retryable(self) -> bool:
        return self.kind is FailureKind.UPSTREAM


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one call needs to reach the user's vendor account: the key and the endpoint."""

    api_key: str
    base_url: str  # no trailing slash

    def __repr__(self) -> str:  # never the key, whatever prints this
        return f"Credentials(base_url={self.base_url!r})"


@dataclass(frozen=True, slots=True)
class VendorSpec:
    """One vendor, as the registry knows it. `wire` names the wire format (the fake vendor serves
    each spec by it); `options` are the adapter's wire-format options."""

    id: str  # the provider id in URLs and rows: "openai", "claude", ...
    display_name: str  # the vendor's name in sentences: "OpenAI", "Anthropic Claude", ...
    default_base_url: str
    default_model: str
    # Called as adapter(spec, http, timeout_s, catalog) by the registry.
    adapter: Callable[..., Provider]
    wire: Literal["openai", "claude", "gemini", "qwen"]
    options: Mapping[str, Any] = field(default_factory=dict)
    order: int = 100  # where it is listed to people (lowest first)


class Provider(ABC):
    """One vendor: `complete` returns the whole answer, `stream` yields it as it is written.
    Made once per vendor at start-up from its spec; holds no per-user state."""

    def __init__(self, spec: VendorSpec, http: httpx2.AsyncClient, timeout_s: float,
                 catalog: Catalog | None = None) -> None:
        self.spec = spec
        self._http = http
        self._timeout_s = timeout_s
        self.catalog = catalog if catalog is not None else load_catalog()

    # The vendor's list-models call, its cheapest authenticated one: (path after the base URL,
    # extra headers), and how its answer lists ids. Subclasses set the path.
    models_path: str = "/models"

    def models_headers(self, creds: Credentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {creds.api_key}"}

    @staticmethod
    def model_ids(answer: Any) -> list[str]:
        """Ids of an OpenAI-style list (`{"data": [{"id"}]}`); adapters override other shapes."""
        items = answer.get("data") if isinstance(answer, dict) else None
        return [i["id"] for i in items or ()
                if isinstance(i, dict) and isinstance(i.get("id"), str)]

    async def list_models(self, creds: Credentials) -> list[str]:
        """The model ids the key may call (the vendor's list-models endpoint), or ProviderError
        (AUTH for a rejected key, `billing` for no credit)."""
        try:
            response = await self._http.get(creds.base_url + self.models_path,
                                             headers=self.models_headers(creds))
            body = response.content
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None
        if response.status_code >= 400:
            raise listing_failure(response.status_code, body, creds.api_key, response.headers)
        try:
            return self.model_ids(loads(body))
        except ValueError:
            raise ProviderError(FailureKind.MALFORMED) from None

    def capabilities(self, model: str) -> Capabilities | None:
        """The catalogue's request rules for `model` (None: unknown, send the vendor's usual)."""
        return self.catalog.capabilities(self.spec.id, model)

    def takes_temperature(self, model: str) -> bool:
        """False where the catalogue says the model refuses a temperature (OpenAI reasoning
        models, Claude, Gemini 3.8); an id it does not know gets the temperature."""
        caps = self.capabilities(model)
        return caps is None or caps.temperature

    def must_disable_thinking(self, model: str, *, stream: bool) -> bool:
        """True for a non-streaming call to a model that refuses one while thinking (DashScope
        Qwen3 open models: 400 InvalidParameter without `enable_thinking: false`)."""
        caps = self.capabilities(model)
        reasoning = caps.reasoning if caps is not None else None
        return (not stream and reasoning is not None
                and reasoning.control == "enable_thinking"
                and reasoning.non_streaming_requires is False)

    def thinking_budget(self, model: str, max_tokens: int) -> int | None:
        """A thinking budget for a model whose thinking is a token budget inside the output limit
        (Gemini 2.5 `thinkingBudget`): half of `max_tokens` (at least 128, the smallest budget
        Gemini 2.5 Pro takes), so thinking cannot use the whole limit and leave an empty reply.
        None for every other model."""
        caps = self.capabilities(model)
        if caps is None or caps.reasoning is None or caps.reasoning.control != "thinking_budget":
            return None
        if caps.token_limit_field != "maxOutputTokens":
            return None  # Claude's budget_tokens is only sent when thinking is asked for
        return max(128, max_tokens // 2)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def display_name(self) -> str:
        return self.spec.display_name

    @contextmanager
    def _failures(self, creds: Credentials) -> Iterator[None]:
        """Every failure of either call path as a `ProviderError`: below HTTP here; adapters on
        an SDK add the SDK's errors."""
        try:
            yield
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None

    @asynccontextmanager
    async def _post_on_pool(
        self, url: str, body: bytes, headers: Mapping[str, str], *, stream: bool,
        failure: Callable[[httpx2.Response], ProviderError],
    ) -> AsyncIterator[httpx2.Response]:
        """One POST over the shared httpx2 pool: the answer (its body unread when streaming),
        or `failure(response)` raised for an HTTP error answer (its body read)."""
        request = self._http.build_request("POST", url, content=body, headers=headers)
        response = await self._http.send(request, stream=True)
        try:
            if response.status_code >= 400 or not stream:
                await response.aread()
            if response.status_code >= 400:
                raise failure(response)
            yield response
        finally:
            await response.aclose()

    # The SDK whose client an adapter makes on its first call instead of at start-up (see
    # `imported`): set with `make_sdk_client`; None for an adapter that needs no such SDK.
    sdk_module: str | None = None
    _sdk_client: Any = None

    def make_sdk_client(self, sdk: ModuleType) -> Any:
        """The adapter's client, from its imported `sdk_module`."""
        raise NotImplementedError(f"{type(self).__name__} names an sdk_module but no client")

    async def sdk_client(self) -> Any:
        """The client of `make_sdk_client`, made once, on the first call."""
        if self._sdk_client is None and self.sdk_module is not None:
            sdk = await imported(self.sdk_module)
            if self._sdk_client is None:  # another first call may have made it meanwhile
                self._sdk_client = self.make_sdk_client(sdk)
        return self._sdk_client

    async def load(self) -> None:
        """Make what the first call needs that start-up did not (the SDK client). The registry
        awaits it before a call's deadline starts, so a slow import is never taken for a slow
        vendor; calls made without it load on their own."""
        await self.sdk_client()

    @abstractmethod
    async def complete(self, request: ChatRequest, creds: Credentials) -> Completion:
        """Call the vendor once (no retries here) or raise `ProviderError`."""

    @abstractmethod
    def stream(self, request: ChatRequest, creds: Credentials) -> AsyncIterator[StreamEvent]:
        """Call the vendor once in its streaming mode; yield deltas and usage as they come, or
        raise `ProviderError` (before or after the first event). Closing the iterator closes the
        vendor's connection."""


# The largest token count a vendor figure may carry (five times today's largest context window):
# beyond it the figure is nonsense, and it must fit the history's INTEGER columns.
MAX_USAGE_TOKENS = 10_000_000
# A model id as vendors spell them ("gpt-4o-2024-08-06", "models/gemini-2.5-pro",
# "meta-llama/Llama-3.3-70B-Instruct:fireworks"), at most the column's 100 characters.
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")


async def imported(name: str) -> ModuleType:
    """The module `name`, imported in a worker thread the first time it is needed. The vendor
    SDKs that only one adapter uses (anthropic, google-genai) cost about 70 MB and a second or
    more to import; a process that never calls that vendor never pays, and the one that does
    keeps serving other requests while the import runs."""
    module = sys.modules.get(name)
    if module is None:
        module = await asyncio.to_thread(importlib.import_module, name)
        freeze_long_lived(collect_first=False)  # the SDK's objects: see llm_service/heap.py
    return module


def checked_tokens(value: object) -> int | None:
    """A vendor's token count made safe to store and charge: None (estimate it instead) when it
    is not a non-negative integer, capped at `MAX_USAGE_TOKENS`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return min(value, MAX_USAGE_TOKENS)


def checked_model(value: object, configured: str) -> str:
    """The model a vendor reports, or the configured one when it reports none or something that
    is not a model id (too long for the history's column, or outside the id charset)."""
    if isinstance(value, str) and _MODEL_ID.fullmatch(value):
        return value
    return configured


def stream_cut() -> ProviderError:
    """The vendor's stream ended before its end marker: the answer may be cut short."""
    return ProviderError(FailureKind.UPSTREAM, detail="the answer stopped before its end")


def unreadable_chunk() -> ProviderError:
    """A piece of the stream that is not the vendor's format."""
    return ProviderError(FailureKind.MALFORMED)


def stream_error_event(
    detail: str | None, api_key: str, kind: FailureKind = FailureKind.UPSTREAM
) -> ProviderError:
    """An error the vendor sent inside a stream that had begun (HTTP 200)."""
    return ProviderError(kind, detail=scrub(detail, api_key))


_BILLING_CODES = ("insufficient_quota", "billing_error", "Arrearage")


def listing_failure(status: int, body: bytes, api_key: str,
                    headers: Mapping[str, str] | httpx2.Headers | None) -> ProviderError:
    """A list-models error answer, whatever the vendor's shape: its message, a rejected key
    (also Gemini's 400 API_KEY_INVALID) and a billing failure read from the body."""
    text = body.decode(errors="replace")
    try:
        data: Any = loads(body)
    except ValueError:
        data = None
    error = data.get("error", data) if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    kind = FailureKind.AUTH if "API_KEY_INVALID" in text else None
    return status_failure(status, message if isinstance(message, str) else None, api_key,
                          headers, kind=kind, billing=any(c in text for c in _BILLING_CODES))


def refused(reason: str | None, api_key: str = "") -> ProviderError:
    """The vendor answered but declined: a blocked prompt, a safety stop, a refusal. `reason`
    is the vendor's own (a block reason, the refusal text)."""
    return ProviderError(FailureKind.REFUSED, detail=scrub(reason, api_key))


def empty_answer() -> ProviderError:
    """The answer was cut at the token limit before any text (reasoning used it all)."""
    return ProviderError(FailureKind.EMPTY)


def checked_answer(text: str, finish_reason: FinishReason) -> None:
    """Raise `empty_answer()` for a reply cut at the limit with no text: not a success."""
    if finish_reason == "length" and not text.strip():
        raise empty_answer()


def kind_for_status(status: int) -> FailureKind:
    """The usual meaning of a vendor's HTTP status; adapters refine it where a vendor differs."""
    if status in (401, 403):
        return FailureKind.AUTH
    if status == 429:
        return FailureKind.RATE_LIMITED
    if status >= 500:
        return FailureKind.UPSTREAM
    return FailureKind.BAD_REQUEST


def status_failure(
    status: int,
    detail: str | None,
    api_key: str,
    headers: Mapping[str, str] | httpx2.Headers | None,
    kind: FailureKind | None = None,
    *,
    billing: bool = False,
    retry_after_s: int | None = None,
) -> ProviderError:
    """A vendor's HTTP error answer: its kind (by status, unless the vendor's own code says
    more), its reason scrubbed of key material, and its Retry-After (the header, else the delay
    the vendor gave in its body). HTTP 402 is always a billing failure."""
    return ProviderError(
        kind or kind_for_status(status),
        status=status,
        detail=scrub(detail, api_key),
        retry_after_s=retry_after_seconds(headers) if retry_after_s is None else retry_after_s,
        billing=billing or status == 402,
    )


def retry_after_seconds(headers: Mapping[str, str] | httpx2.Headers | None) -> int | None:
    """`Retry-After` as whole seconds, rounded up (seconds or an HTTP date); None when absent."""
    if not headers:
        return None
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0, math.ceil(float(value)))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        delta = parsedate_to_datetime(value) - datetime.now(UTC)
    except (TypeError, ValueError):
        return None
    return max(0, math.ceil(delta.total_seconds()))


_KEYLIKE = re.compile(r"(?<![A-Za-z0-9])(?:sk-ant-|sk-|hf_|AIza|Bearer\s+)[A-Za-z0-9_\-*.]{4,}")
_LABELLED_KEY = re.compile(r"(?i)(api[_ -]?key(?: provided)?\s*[:=]\s*)[A-Za-z0-9_\-*.]{6,}")
_MAX_DETAIL = 300
# Read at most this much of a vendor's message: enough for any real reason, bounded work.
_MAX_SCRUBBED = 4 * _MAX_DETAIL
# Any run of this many characters shared with the key (any case) is key material.
_OVERLAP = 8
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _key_forms(api_key: str) -> list[str]:
    """The key and its base64 encodings (standard and URL-safe) at each of the three byte
    alignments it can take inside a longer encoded value, minus the characters the
    surrounding bytes also shape."""
    raw = api_key.encode()
    forms = [api_key]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode().rstrip("=")
        core = encoded[(pad * 4 + 2) // 3 : len(encoded) - 3]  # drop what the padding shaped
        forms += [core, core.replace("+", "-").replace("/", "_")]
    return [form for form in forms if len(form) >= _OVERLAP]


def _redact_overlaps(text: str, api_key: str) -> str:
    """Every stretch of `text` covered by an 8-character window that also occurs (ignoring
    case) in the key or one of its base64 forms becomes `[redacted]`: an echoed key survives
    neither upper-casing, nor base64, nor being split into pieces of 8 or more."""
    windows = {
        folded[i : i + _OVERLAP]
        for folded in (form.translate(_ASCII_LOWER) for form in _key_forms(api_key))
        for i in range(len(folded) - _OVERLAP + 1)
    }
    folded = text.translate(_ASCII_LOWER)  # keys are ASCII; keeps every index in place
    covered = [False] * len(text)
    for i in range(len(text) - _OVERLAP + 1):
        if folded[i : i + _OVERLAP] in windows:
            covered[i : i + _OVERLAP] = [True] * _OVERLAP
    pieces: list[str] = []
    for i, char in enumerate(text):
        if not covered[i]:
            pieces.append(char)
        elif i == 0 or not covered[i - 1]:
            pieces.append("[redacted]")
    return "".join(pieces)


def scrub(text: str | None, api_key: str) -> str | None:
    """A vendor's message made safe to show and log: the key, any 8 characters of it in any
    case, its base64 forms, and anything key-like removed."""
    if not text:
        return None
    cleaned = text[:_MAX_SCRUBBED]
    if api_key:
        cleaned = _redact_overlaps(cleaned.replace(api_key, "[redacted]"), api_key)
    cleaned = _LABELLED_KEY.sub(r"\1[redacted]", cleaned)
    cleaned = _KEYLIKE.sub("[redacted]", cleaned)
    cleaned = " ".join(cleaned.split())
    return cleaned[:_MAX_DETAIL] or None


class VendorAnswerTooLarge(httpx2.ReadError):
    """A vendor's answer grew past LLM_MAX_VENDOR_RESPONSE_BYTES (raised while it is read, by the
    shared client's transport): the answer is dropped, not retried."""


def transport_failure(exc: BaseException) -> ProviderError:
    """A failure below HTTP (httpx2's, or an SDK's wrapping of one): a connection that could not
    be made is worth a retry, even when the transport calls it a connect timeout (aiohttp's
    transport reports a refused connection that way); a request that was sent and then timed out
    is not."""
    cause = exc if isinstance(exc, httpx2.HTTPError) else exc.__cause__ or exc.__context__
    if isinstance(cause, VendorAnswerTooLarge):
        return ProviderError(FailureKind.MALFORMED, detail=str(cause))
    if isinstance(cause, httpx2.TimeoutException) and not isinstance(cause, httpx2.ConnectTimeout):
        return ProviderError(FailureKind.TIMEOUT)
    return ProviderError(FailureKind.UPSTREAM)


def merge_turns(turns: Sequence[ChatTurn]) -> list[ChatTurn]:
    """Consecutive turns of one role joined, as vendors that require alternation want."""
    merged: list[ChatTurn] = []
    for turn in turns:
        if merged and merged[-1].role == turn.role:
            merged[-1] = ChatTurn(turn.role, f"{merged[-1].content}\n\n{turn.content}")
        else:
            merged.append(turn)
    return merged


async def sse_events(response: httpx2.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of a server-sent-events body; `data:` with or without the space."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()
    if data:
        yield event, "\n".join(data)
