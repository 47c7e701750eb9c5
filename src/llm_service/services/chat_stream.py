"""The streaming chat: Server-Sent Events relayed from the vendor as they come.

Events: `delta` (`{"text"}`, sanitized), then `done` (`{"response", "tokensUsed", "inputTokens",
"outputTokens", "model", "id"}`, plus `"tokensEstimated": true` when the vendor's stream had no
counts), or `error` (the contract's error body) after which the stream ends. A comment line
(`: keep-alive`) goes out every `HEARTBEAT_S` while the vendor is silent; a vendor silent for
`LLM_UPSTREAM_TIMEOUT_S` ends the stream with `provider_timeout`.

Everything that can fail before the first byte (config, key, the vendor's answer to the request
itself) is checked in `open_chat_stream`, so it is the normal JSON error. After a complete stream
the message and reply are stored as the non-streaming route stores them; when the client goes away
or the vendor fails mid-stream, the vendor call is closed at once and the message is stored with
the partial reply, marked interrupted. Storing is shielded from the cancellation that a client
disconnect brings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from llm_service.errors import ServiceError
from llm_service.jsonutil import dumps
from llm_service.providers.base import FailureKind, ProviderError, StreamDelta, StreamEvent
from llm_service.runtime import Runtime
from llm_service.schemas import ChatIn
from llm_service.security.jwt import Principal
from llm_service.security.sanitize import StreamSanitizer, sanitize
from llm_service.services import history
from llm_service.services.budgets import estimate_tokens
from llm_service.services.chat import (
    PreparedChat,
    Spend,
    calling_vendor,
    prepare,
    provider_failure,
)
from llm_service.services.history import NewMessage

log = logging.getLogger("llm_service.chat_stream")

HEARTBEAT_S = 15.0
HEARTBEAT = b": keep-alive\n\n"
CLOSE_VENDOR_WITHIN_S = 1.0


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


@dataclass(slots=True)
class _Usage:
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    def merge(self, event: StreamEvent) -> None:
        for name in ("model", "input_tokens", "output_tokens"):
            value = getattr(event, name)
            if value is not None:
                setattr(self, name, value)


async def open_chat_stream(
    runtime: Runtime, *, user: Principal, provider: str, body: ChatIn
) -> ChatStream:
    prepared = await prepare(runtime, user_id=user.user_id, provider=provider, body=body)
    spend = Spend(runtime, user, provider)
    await spend.reserve(prepared.request)
    async with calling_vendor(runtime, provider, prepared, spend):
        first, events = await runtime.providers.open_stream(
            provider, prepared.request, prepared.api_key
        )
    return ChatStream(runtime, user.user_id, provider, body, prepared, spend, first, events)


class ChatStream:
    def __init__(
        self,
        runtime: Runtime,
        user_id: int,
        provider: str,
        body: ChatIn,
        prepared: PreparedChat,
        spend: Spend,
        first: StreamEvent | None,
        events: AsyncIterator[StreamEvent],
    ) -> None:
        self._runtime = runtime
        self._user_id = user_id
        self._provider = provider
        self._body = body
        self._prepared = prepared
        self._spend = spend
        self._first = first
        self._events = events
        self._usage = _Usage()
        self._text = StreamSanitizer(image_hosts=runtime.settings.allowed_image_hosts)

    async def sse(self, request_id: str, on_end: Callable[[], None]) -> AsyncIterator[bytes]:
        """The response body. `on_end` runs once the stream is over, however it ends."""
        stored = False
        try:
            try:
                async for piece in self._pieces():
                    if piece is None:
                        yield HEARTBEAT
                    elif delta := self._text.feed(piece):
                        yield sse("delta", {"text": delta})
            except ProviderError as exc:
                self._runtime.metrics.vendor_error(self._provider, exc.kind)
                error = provider_failure(exc, self._prepared.adapter.display_name,
                                         self._runtime.settings.upstream_timeout_s)
                await self._store(interrupted=True)
                stored = True
                yield sse("error", self._error_body(error, request_id))
                return
            except Exception:
                log.exception("request %s: stream failed", request_id)
                await self._store(interrupted=True)
                stored = True
                yield sse("error", self._error_body(ServiceError(
                    500, "internal_error",
                    f"Something went wrong on our side; if it persists, report request id "
                    f"{request_id}."), request_id))
                return
            if rest := self._text.finish():
                yield sse("delta", {"text": rest})
            done = await self._store(interrupted=False)
            stored = True
            yield sse("done", done)
        except BaseException:  # the client went away: the stream is cancelled
            if not stored:
                await self._store(interrupted=True)
            raise
        finally:
            on_end()

    async def _pieces(self) -> AsyncIterator[str | None]:
        """The vendor's text pieces, None for a heartbeat; usage is collected on the side."""
        timeout_s = self._runtime.settings.upstream_timeout_s
        pending: asyncio.Future[StreamEvent] | None = None
        try:
            event = self._first
            while event is not None:
                if isinstance(event, StreamDelta):
                    yield event.text
                else:
                    self._usage.merge(event)
                pending = asyncio.ensure_future(anext(self._events))
                silent_s = 0.0
                while not pending.done():
                    wait_s = min(HEARTBEAT_S, timeout_s - silent_s)
                    done, _ = await asyncio.wait({pending}, timeout=wait_s)
                    if done:
                        break
                    silent_s += wait_s
                    if silent_s >= timeout_s:
                        raise ProviderError(FailureKind.TIMEOUT)
                    yield None
                try:
                    event = pending.result()
                except StopAsyncIteration:
                    event = None
                pending = None
        finally:
            await self._close_vendor(pending)

    async def _close_vendor(self, pending: asyncio.Future[StreamEvent] | None) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_VENDOR_WITHIN_S):
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.wait({pending})
            await self._events.aclose()  # type: ignore[attr-defined]

    async def _store(self, *, interrupted: bool) -> dict[str, Any]:
        request = self._prepared.request
        usage = self._usage
        estimated = usage.input_tokens is None or usage.output_tokens is None
        input_tokens = usage.input_tokens
        if input_tokens is None:
            input_tokens = estimate_tokens("".join(t.content for t in request.messages))
        output_tokens = usage.output_tokens
        if output_tokens is None:
            output_tokens = estimate_tokens(self._text.raw)
        reply = self._text.text()
        hosts = self._runtime.settings.allowed_image_hosts
        model = usage.model or self._prepared.configured_model
        cost = self._spend.cost(model, input_tokens, output_tokens)
        self._runtime.metrics.usage(self._provider, model, input_tokens, output_tokens, cost)
        with anyio.CancelScope(shield=True):
            try:
                async with self._runtime.autocommit.connect() as conn:
                    _, reply_id = await history.store_messages(
                        conn, self._user_id, self._provider,
                        [
                            NewMessage("user", sanitize(self._body.message, image_hosts=hosts),
                                       input_tokens,
                                       tokens_estimated=estimated),
                            NewMessage("assistant", reply, output_tokens,
                                       interrupted=interrupted, tokens_estimated=estimated,
                                       model=model, input_tokens=input_tokens,
                                       output_tokens=output_tokens, cost_usd=cost),
                        ],
                    )
            finally:
                await self._spend.settle(input_tokens + output_tokens, cost)
        done: dict[str, Any] = {
            "response": reply,
            "tokensUsed": input_tokens + output_tokens,
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "model": model,
            "id": reply_id,
            "costUsd": float(cost) if cost is not None else None,
        }
        if estimated:
            done["tokensEstimated"] = True
        if self._spend.warning:
            done["warning"] = self._spend.warning
        return done

    @staticmethod
    def _error_body(error: ServiceError, request_id: str) -> dict[str, Any]:
        return {"success": False, "error": error.message, "code": error.code,
                "requestId": request_id}
