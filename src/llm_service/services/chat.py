"""The chat flow: config → key → context → vendor → both messages stored in one transaction.

The database connection is released before the vendor is called (a vendor may take a minute; the
pool must not wait on it): one short read, the call, then one short write. Both run on an
autocommit connection: the read is one `SELECT` (two without `history` in the request), the write
one `INSERT` of both rows, so each is a single round trip with no `BEGIN`/`COMMIT` around it, and
the two rows are stored together because one statement is atomic. A vendor failure stores
nothing. The vendor gets the message as typed; what is stored and returned is sanitized.
Where the exchange is stored is the call's `Thread`: the provider's default thread here, or a
conversation (`services/conversations.py`, which reads its own context and system prompt and
writes its exchange in one transaction), through this same answer path.

Once the vendor has answered, the user has paid for the answer, so a database failure after it
never costs them the answer: storing the exchange and settling the budget are each retried
briefly (`DB_WRITE_ATTEMPTS`, on connection-level failures only), and when storing still fails
the answer is returned anyway with `id: null` and a `warning` saying it was not saved (logged
without SQL or content, counted in `llm_db_write_failures_total`). A settlement that still fails
leaves its reservation to expire (see `budgets`).

What a vendor reports is checked before it is stored or charged (`checked_tokens`,
`checked_model`: a negative count is replaced by the estimate, an absurd one capped, a model
name that is no model id replaced by the configured one), and a reply longer than
`reply_cap` (maxTokens x 8 characters, at most `LLM_MAX_REPLY_CHARS`) is cut there, stored
marked interrupted and answered with `"truncated": true`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, TypeVar, get_args

import anyio
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from llm_service.db.models import utcnow
from llm_service.errors import ServiceError, is_database_outage
from llm_service.providers.base import (
    ChatRequest,
    ChatTurn,
    FailureKind,
    Provider,
    ProviderError,
    Role,
    checked_model,
    checked_tokens,
)
from llm_service.retries import retried
from llm_service.runtime import Runtime
from llm_service.schemas import ChatIn, ChatOut
from llm_service.security.crypto import KeyUnreadable
from llm_service.security.jwt import Principal
from llm_service.security.sanitize import sanitize
from llm_service.services import budgets, configs, history
from llm_service.services.history import NewMessage

log = logging.getLogger("llm_service.chat")
T = TypeVar("T")

# Storing and settling after a paid vendor call: three attempts over about a second, on
# connection-level failures only (a blip or a failover), then give up and say so.
DB_WRITE_ATTEMPTS = 3
REPLY_CHARS_PER_TOKEN = 8
# The roles of a conversation's turns (`ChatTurn.role`); a system prompt is never one.
TURN_ROLES = frozenset(get_args(Role))
NOT_STORED = ("This answer could not be saved to your chat history (our database is not "
              "reachable right now); copy it if you need it.")
TRUNCATED = ("This answer was cut at {cap:,} characters, the most a reply with your maxTokens "
             "may have; ask for a shorter answer.")


def _db_write_retrying(_spent_s: float) -> AsyncRetrying:
    return AsyncRetrying(
        stop=stop_after_attempt(DB_WRITE_ATTEMPTS),
        wait=wait_exponential(multiplier=0.2, max=1.0),
        retry=retry_if_exception(is_database_outage),
        reraise=True,
    )


async def retrying_db_write(write: Callable[[], Awaitable[T]]) -> T:
    """`await write()` with the brief retry above; the last failure is raised."""
    return await retried(write, retryable=is_database_outage, retrying=_db_write_retrying)


def reply_cap(runtime: Runtime, request: ChatRequest) -> int:
    """The most characters a reply may have: generous for `maxTokens` (a token is about four
    characters of English), bounded by `LLM_MAX_REPLY_CHARS`."""
    return min(request.max_tokens * REPLY_CHARS_PER_TOKEN, runtime.settings.max_reply_chars)


def input_texts(request: ChatRequest) -> list[str]:
    """What the vendor reads as input: the system prompt (when there is one), then the turns."""
    turns = [t.content for t in request.messages]
    return [request.system, *turns] if request.system else turns


def join_warnings(*sentences: str | None) -> str | None:
    return " ".join(s for s in sentences if s) or None


@dataclass(frozen=True, slots=True)
class Usage:
    """A reply's usage as stored and charged: checked figures, estimated where missing."""

    model: str
    input_tokens: int
    output_tokens: int
    estimated: bool

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def checked_usage(
    model: object, input_tokens: object, output_tokens: object, *, request: ChatRequest,
    reply: str, configured_model: str,
) -> Usage:
    """A vendor's usage report made safe (both chat routes): a missing or invalid figure is
    estimated, an absurd one capped, an invalid model name replaced by the configured one."""
    checked_in, checked_out = checked_tokens(input_tokens), checked_tokens(output_tokens)
    estimated = checked_in is None or checked_out is None
    if checked_in is None:
        checked_in = budgets.estimate_input_tokens(input_texts(request))
    if checked_out is None:
        checked_out = budgets.estimate_tokens(reply)
    return Usage(checked_model(model, configured_model), checked_in, checked_out, estimated)


@dataclass(frozen=True, slots=True)
class Stored:
    """Where an exchange was stored: the reply's id (None: not stored, `warning` says why) and,
    in a conversation, the conversation and the message the reply answers."""

    reply_id: int | None
    parent_id: int | None = None
    conversation_id: int | None = None
    warning: str | None = None


class Thread(Protocol):
    """Where a chat's exchange goes: the provider's default thread, or a conversation
    (`services/conversations.py`). `store` writes the message and its reply (`messages`, in
    that order) in one go; it may be called again after a connection-level failure."""

    async def store(self, runtime: Runtime, user: Principal, provider: str,
                    messages: Sequence[NewMessage]) -> Stored: ...


class DefaultThread:
    """The provider's default thread: both rows in one autocommit `INSERT`."""

    async def store(self, runtime: Runtime, user: Principal, provider: str,
                    messages: Sequence[NewMessage]) -> Stored:
        async with runtime.autocommit.connect() as conn:
            _, reply_id = await history.store_messages(conn, user.user_id, provider, messages)
        return Stored(int(reply_id))


DEFAULT_THREAD = DefaultThread()


async def store_exchange(
    runtime: Runtime, user: Principal, provider: str, messages: Sequence[NewMessage],
    thread: Thread = DEFAULT_THREAD,
) -> Stored:
    """Store the message and its reply (retried briefly); `reply_id` None when the database
    stayed out (logged and counted; `warning` tells the user)."""

    async def write() -> Stored:
        return await thread.store(runtime, user, provider, messages)

    try:
        with anyio.CancelScope(shield=True):
            return await retrying_db_write(write)
    except Exception as exc:
        if not is_database_outage(exc):
            raise
        log.warning("chat of user %s with %s: the exchange was not stored, the database is "
                    "unavailable (%s)", user.user_id, provider, type(exc).__name__)
        runtime.metrics.db_write_failed("history")
        return Stored(None, warning=NOT_STORED)


def not_configured(name: str) -> ServiceError:
    return ServiceError(
        400,
        "provider_not_configured",
        f"You have not set up {name} yet: add your {name} API key in the LLM settings.",
    )


def key_unreadable(name: str) -> ServiceError:
    return ServiceError(
        400,
        "provider_key_unreadable",
        f"Your saved {name} API key can no longer be read: enter it again in the LLM settings.",
    )


def provider_failure(error: ProviderError, name: str, timeout_s: float) -> ServiceError:
    """A vendor failure as the contract's error, in a sentence for the person at the chat."""
    reason = f" ({name} said: {error.detail})" if error.detail else ""
    if error.kind is FailureKind.REFUSED:
        why = f": {error.detail}" if error.detail else ""
        return ServiceError(
            400,
            "provider_refused",
            f"{name} declined to answer this message{why}. Nothing was stored: rephrase the "
            "message, or try another model.",
        )
    if error.kind is FailureKind.EMPTY:
        return ServiceError(
            400,
            "provider_empty_answer",
            f"{name} used the whole token limit (Max tokens) before writing any answer, most "
            "likely thinking: raise Max tokens in the LLM settings and try again.",
        )
    if error.billing and error.kind in (FailureKind.RATE_LIMITED, FailureKind.BAD_REQUEST):
        rate_limited = error.kind is FailureKind.RATE_LIMITED
        return ServiceError(
            429 if rate_limited else 400,
            "provider_rate_limited" if rate_limited else "provider_bad_request",
            f"{name} says the account behind your key has no credit left, or its plan does not "
            f"cover this{reason}: add credit or check your plan with {name}, then try again.",
        )
    if error.kind is FailureKind.AUTH:
        return ServiceError(
            400,
            "provider_auth_failed",
            f"{name} rejected your API key{reason}: check the key in the LLM settings and save "
            "it again.",
        )
    if error.kind is FailureKind.BAD_REQUEST:
        return ServiceError(
            400,
            "provider_bad_request",
            f"{name} refused the request{reason}: check the model name in the LLM settings, or "
            "shorten the conversation.",
        )
    if error.kind is FailureKind.RATE_LIMITED:
        wait, headers = "wait a little and try again", {}
        if error.retry_after_s is not None:
            wait = f"try again in {error.retry_after_s} seconds"
            headers = {"Retry-After": str(error.retry_after_s)}
        return ServiceError(
            429,
            "provider_rate_limited",
            f"{name} says your key has reached its rate limit or quota{reason}: {wait}, or check "
            f"your plan with {name}.",
            headers=headers,
        )
    if error.kind is FailureKind.TIMEOUT:
        return ServiceError(
            504,
            "provider_timeout",
            f"{name} did not answer within {timeout_s:g} seconds: try again, or ask for a shorter "
            "answer.",
        )
    if error.kind is FailureKind.MALFORMED:
        return ServiceError(
            502,
            "provider_error",
            f"{name} sent an answer that could not be read{reason}: try again in a moment.",
        )
    status = f" (HTTP {error.status})" if error.status else ""
    return ServiceError(
        502,
        "provider_error",
        f"{name} is not answering properly right now{status}: try again in a moment.",
    )


@dataclass(frozen=True, slots=True)
class PreparedChat:
    """Everything a vendor call needs, read and checked before anything is sent."""

    adapter: Provider
    request: ChatRequest
    api_key: str
    configured_model: str
    thread: Thread = DEFAULT_THREAD


class Spend:
    """A chat's cost: the budget reservation before the call (when the user's role has a
    budget), the settlement after it, and the cost recorded on the reply."""

    def __init__(self, runtime: Runtime, user: Principal, provider: str) -> None:
        self._runtime = runtime
        self._user = user
        self._provider = provider
        self._budget = budgets.budget_for(runtime.settings, user.role)
        self._reservation: budgets.Reservation | None = None
        self.warning: str | None = None

    def cost(self, model: str, input_tokens: int, output_tokens: int,
             cached_input_tokens: int | None = 0) -> Decimal | None:
        """Priced from the catalogue; cached input tokens (part of `input_tokens`) at the
        model's cached rate."""
        cached = min(max(cached_input_tokens or 0, 0), input_tokens)
        return self._runtime.catalog.cost(self._provider, model, input_tokens, output_tokens,
                                          cached)

    async def reserve(self, request: ChatRequest) -> None:
        """Reserve the worst case, or raise 429 `budget_exceeded`."""
        if not self._budget.limited:
            return
        input_tokens = budgets.estimate_input_tokens(input_texts(request))
        worst = self.cost(request.model, input_tokens, request.max_tokens) or Decimal(0)
        settings = self._runtime.settings
        try:
            async with self._runtime.engine.begin() as conn:
                self._reservation, _ = await budgets.reserve(
                    conn, self._budget, self._user.user_id, input_tokens + request.max_tokens,
                    worst, utcnow(), budgets.reservation_ttl_s(settings),
                )
        except ServiceError:
            self._runtime.metrics.rejected("budget_exceeded")
            raise

    async def settle(self, tokens: int, cost: Decimal | None) -> None:
        """Count what was used (nothing, to release after a failure); retried briefly. When the
        database stays out the reservation is left to expire, and the chat goes on."""
        reservation = self._reservation
        if reservation is None:
            return
        self._reservation = None

        async def write() -> budgets.Standing | None:
            async with self._runtime.engine.begin() as conn:
                return await budgets.settle(conn, reservation, tokens, cost or Decimal(0))

        with anyio.CancelScope(shield=True):
            try:
                figures = await retrying_db_write(write)
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                log.warning("budget of user %s: the reservation was not settled, the database "
                            "is unavailable (%s); it expires by itself", self._user.user_id,
                            type(exc).__name__)
                self._runtime.metrics.db_write_failed("budget")
                return
        if figures is not None:
            self.warning = budgets.warning(self._budget, figures, utcnow())


async def prepare(
    runtime: Runtime, *, user_id: int, provider: str, body: ChatIn
) -> PreparedChat:
    """The user's configuration (with the provider's system prompt), key and context (one
    autocommit read; two without `history`). The system prompt is `ChatRequest.system`, never a
    turn: only user and assistant rows of the history become turns."""
    adapter = runtime.providers[provider]
    async with runtime.autocommit.connect() as conn:
        config = await configs.chat_config(conn, user_id, provider)
        if config is None:
            raise not_configured(adapter.display_name)
        if body.history is not None:
            context = [ChatTurn(item.role, item.content) for item in body.history]
        else:
            stored = await history.recent_turns(
                conn, user_id, provider, runtime.settings.context_messages
            )
            context = [ChatTurn(role, content) for role, content in stored  # type: ignore[arg-type]
                       if role in TURN_ROLES]
    return prepared_chat(runtime, config, user_id=user_id, provider=provider,
                         context=context, message=body.message, system=config.system_prompt)


def prepared_chat(
    runtime: Runtime, config: Any, *, user_id: int, provider: str, context: Sequence[ChatTurn],
    message: str, model: str | None = None, system: str | None = None,
    thread: Thread = DEFAULT_THREAD,
) -> PreparedChat:
    """The vendor call of a chat from the configuration row (`configs.chat_config`): the key
    decrypted, the context then the message, the configured model unless `model` is given, and
    `system` (the one system prompt of the call, or None)."""
    adapter = runtime.providers[provider]
    try:
        api_key = runtime.keyring.decrypt(
            config.api_key_encrypted, user_id=user_id, provider=provider
        )
    except KeyUnreadable:
        raise key_unreadable(adapter.display_name) from None
    request = ChatRequest(
        model=model or config.model,
        messages=[*context, ChatTurn("user", message)],
        temperature=float(config.temperature),
        max_tokens=config.max_tokens,
        region=config.region,
        system=system,
    )
    return PreparedChat(adapter, request, api_key, request.model, thread)


@dataclass(frozen=True, slots=True)
class VendorReply:
    """What the vendor answered, as either route has it once the answer is over."""

    text: str  # as the vendor wrote it (cut at the reply cap)
    shown: str  # sanitized: what is stored and returned
    model: object  # the vendor's figures, unchecked
    input_tokens: object
    output_tokens: object
    cached_input_tokens: int | None = None  # part of input_tokens, priced at the cached rate
    finish_reason: str | None = None
    interrupted: bool = False
    truncated: bool = False


@dataclass(slots=True)
class ChatCall:
    """One chat, from its checks to its recorded answer; both chat routes go through it."""

    runtime: Runtime
    user: Principal
    provider: str
    body: ChatIn
    prepared: PreparedChat
    spend: Spend

    @property
    def reply_cap(self) -> int:
        return reply_cap(self.runtime, self.prepared.request)

    def failure(self, error: ProviderError) -> ServiceError:
        return provider_failure(error, self.prepared.adapter.display_name,
                                self.runtime.settings.upstream_timeout_s)

    @asynccontextmanager
    async def calling_vendor(self) -> AsyncIterator[None]:
        """Around the vendor call (or the start of a stream): its latency and errors are
        counted, a failure becomes the contract's error and releases the budget reservation."""
        metrics = self.runtime.metrics
        began = time.perf_counter()
        try:
            yield
        except ProviderError as exc:
            metrics.vendor_call(self.provider, time.perf_counter() - began)
            metrics.vendor_error(self.provider, exc.kind)
            await self.spend.settle(0, None)
            raise self.failure(exc) from None
        except BaseException:
            await self.spend.settle(0, None)
            raise
        metrics.vendor_call(self.provider, time.perf_counter() - began)

    async def record(self, reply: VendorReply) -> ChatOut:
        """The one answer path: the vendor's figures checked, the reply priced and counted,
        the message and reply stored, the budget settled, and the answer both routes give.
        Shielded: once the vendor has answered, a client going away does not lose the reply."""
        runtime, prepared = self.runtime, self.prepared
        usage = checked_usage(reply.model, reply.input_tokens, reply.output_tokens,
                              request=prepared.request, reply=reply.text,
                              configured_model=prepared.configured_model)
        cached = min(max(reply.cached_input_tokens or 0, 0), usage.input_tokens)
        cut_at_limit = reply.finish_reason == "length"  # the vendor stopped at maxTokens
        cost = self.spend.cost(usage.model, usage.input_tokens, usage.output_tokens, cached)
        runtime.metrics.usage(self.provider, usage.model, usage.input_tokens,
                              usage.output_tokens, cost)
        message = sanitize(self.body.message, image_hosts=runtime.settings.allowed_image_hosts)
        with anyio.CancelScope(shield=True):
            try:
                stored = await store_exchange(runtime, self.user, self.provider, [
                    NewMessage("user", message, usage.input_tokens,
                               tokens_estimated=usage.estimated),
                    NewMessage("assistant", reply.shown, usage.output_tokens,
                               interrupted=reply.interrupted, tokens_estimated=usage.estimated,
                               model=usage.model, input_tokens=usage.input_tokens,
                               output_tokens=usage.output_tokens, cost_usd=cost,
                               cached_input_tokens=cached,
                               finish_reason="length" if cut_at_limit else None),
                ], prepared.thread)
            finally:
                await self.spend.settle(usage.tokens, cost)
        return ChatOut(
            response=reply.shown,
            tokensUsed=usage.tokens,
            model=usage.model,
            inputTokens=usage.input_tokens,
            outputTokens=usage.output_tokens,
            id=stored.reply_id,
            costUsd=float(cost) if cost is not None else None,
            tokensEstimated=True if usage.estimated else None,
            truncated=True if reply.truncated else None,
            finishReason="length" if cut_at_limit else None,
            warning=join_warnings(stored.warning,
                                  TRUNCATED.format(cap=self.reply_cap) if reply.truncated
                                  else None,
                                  self.spend.warning),
            conversationId=stored.conversation_id,
            parentId=stored.parent_id,
        )


async def begin_chat(
    runtime: Runtime, *, user: Principal, provider: str, body: ChatIn,
    prepared: PreparedChat | None = None,
) -> ChatCall:
    """Everything checked and the worst case reserved, before the vendor is called; `prepared`
    when the caller read its own context (a conversation), else the default thread's."""
    if prepared is None:
        prepared = await prepare(runtime, user_id=user.user_id, provider=provider, body=body)
    spend = Spend(runtime, user, provider)
    await spend.reserve(prepared.request)
    return ChatCall(runtime, user, provider, body, prepared, spend)


async def chat(
    runtime: Runtime, *, user: Principal, provider: str, body: ChatIn
) -> dict[str, Any]:
    return await complete(await begin_chat(runtime, user=user, provider=provider, body=body))


async def complete(call: ChatCall) -> dict[str, Any]:
    """The JSON route's answer: the vendor called once, the reply recorded."""
    runtime, provider = call.runtime, call.provider
    async with call.calling_vendor():
        completion = await runtime.providers.complete(
            provider, call.prepared.request, call.prepared.api_key
        )
    text = completion.text[:call.reply_cap]
    answer = await call.record(VendorReply(
        text=text,
        shown=sanitize(text, image_hosts=runtime.settings.allowed_image_hosts),
        model=completion.model,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        cached_input_tokens=completion.cached_input_tokens,
        finish_reason=completion.finish_reason,
        interrupted=len(completion.text) > len(text),
        truncated=len(completion.text) > len(text),
    ))
    return answer.body()
