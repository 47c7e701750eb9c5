"""The chat flow: config → key → context → vendor → both messages stored in one transaction.

The database connection is released before the vendor is called (a vendor may take a minute; the
pool must not wait on it): one short read, the call, then one short write. Both run on an
autocommit connection: the read is one `SELECT` (two without `history` in the request), the write
one `INSERT` of both rows, so each is a single round trip with no `BEGIN`/`COMMIT` around it, and
the two rows are stored together because one statement is atomic. A vendor failure stores
nothing. The vendor gets the message as typed; what is stored and returned is sanitized.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anyio

from llm_service.db.models import utcnow
from llm_service.errors import ServiceError
from llm_service.providers.base import (
    ChatRequest,
    ChatTurn,
    FailureKind,
    Provider,
    ProviderError,
)
from llm_service.runtime import Runtime
from llm_service.schemas import ChatIn
from llm_service.security.crypto import KeyUnreadable
from llm_service.security.jwt import Principal
from llm_service.security.sanitize import sanitize
from llm_service.services import budgets, configs, history
from llm_service.services.history import NewMessage


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

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        return self._runtime.pricing.cost(self._provider, model, input_tokens, output_tokens)

    async def reserve(self, request: ChatRequest) -> None:
        """Reserve the worst case, or raise 429 `budget_exceeded`."""
        if not self._budget.limited:
            return
        input_tokens = budgets.estimate_tokens("".join(t.content for t in request.messages))
        worst = self.cost(request.model, input_tokens, request.max_tokens) or Decimal(0)
        try:
            async with self._runtime.autocommit.connect() as conn:
                self._reservation, _ = await budgets.reserve(
                    conn, self._budget, self._user.user_id, input_tokens + request.max_tokens,
                    worst, utcnow(),
                )
        except ServiceError:
            self._runtime.metrics.rejected("budget_exceeded")
            raise

    async def settle(self, tokens: int, cost: Decimal | None) -> None:
        """Count what was used (nothing, to release after a failure)."""
        if self._reservation is None:
            return
        with anyio.CancelScope(shield=True):
            async with self._runtime.autocommit.connect() as conn:
                figures = await budgets.settle(conn, self._reservation, tokens, cost or Decimal(0))
        self._reservation = None
        self.warning = budgets.warning(self._budget, figures, utcnow())


async def prepare(
    runtime: Runtime, *, user_id: int, provider: str, body: ChatIn
) -> PreparedChat:
    """The user's configuration, key and context (one autocommit read; two without `history`)."""
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
            context = [ChatTurn(role, content) for role, content in stored]  # type: ignore[arg-type]
    try:
        api_key = runtime.keyring.decrypt(
            config.api_key_encrypted, user_id=user_id, provider=provider
        )
    except KeyUnreadable:
        raise key_unreadable(adapter.display_name) from None
    request = ChatRequest(
        model=config.model,
        messages=[*context, ChatTurn("user", body.message)],
        temperature=float(config.temperature),
        max_tokens=config.max_tokens,
    )
    return PreparedChat(adapter, request, api_key, config.model)


@asynccontextmanager
async def calling_vendor(
    runtime: Runtime, provider: str, prepared: PreparedChat, spend: Spend
) -> AsyncIterator[None]:
    """Around the vendor call (or the start of a stream): its latency and errors are counted, a
    failure becomes the contract's error and releases the budget reservation."""
    began = time.perf_counter()
    try:
        yield
    except ProviderError as exc:
        runtime.metrics.vendor_call(provider, time.perf_counter() - began)
        runtime.metrics.vendor_error(provider, exc.kind)
        await spend.settle(0, None)
        raise provider_failure(
            exc, prepared.adapter.display_name, runtime.settings.upstream_timeout_s
        ) from None
    except BaseException:
        await spend.settle(0, None)
        raise
    runtime.metrics.vendor_call(provider, time.perf_counter() - began)


async def chat(
    runtime: Runtime, *, user: Principal, provider: str, body: ChatIn
) -> dict[str, Any]:
    prepared = await prepare(runtime, user_id=user.user_id, provider=provider, body=body)
    spend = Spend(runtime, user, provider)
    await spend.reserve(prepared.request)
    async with calling_vendor(runtime, provider, prepared, spend):
        completion = await runtime.providers.complete(
            provider, prepared.request, prepared.api_key
        )

    model = completion.model or prepared.configured_model
    cost = spend.cost(model, completion.input_tokens, completion.output_tokens)
    runtime.metrics.usage(provider, model, completion.input_tokens, completion.output_tokens,
                          cost)
    hosts = runtime.settings.allowed_image_hosts
    reply = sanitize(completion.text, image_hosts=hosts)
    try:
        async with runtime.autocommit.connect() as conn:
            _, reply_id = await history.store_messages(
                conn,
                user.user_id,
                provider,
                [
                    NewMessage("user", sanitize(body.message, image_hosts=hosts),
                               completion.input_tokens),
                    NewMessage("assistant", reply, completion.output_tokens, model=model,
                               input_tokens=completion.input_tokens,
                               output_tokens=completion.output_tokens, cost_usd=cost),
                ],
            )
    finally:
        await spend.settle(completion.input_tokens + completion.output_tokens, cost)
    answer: dict[str, Any] = {
        "response": reply,
        "tokensUsed": completion.input_tokens + completion.output_tokens,
        "model": model,
        "inputTokens": completion.input_tokens,
        "outputTokens": completion.output_tokens,
        "id": reply_id,
        "costUsd": float(cost) if cost is not None else None,
    }
    if spend.warning:
        answer["warning"] = spend.warning
    return answer
