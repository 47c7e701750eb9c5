"""The streaming chat: Server-Sent Events relayed from the vendor as they come.

Events: `delta` (`{"text"}`, sanitized), then `done` (`{"response", "tokensUsed", "inputTokens",
"outputTokens", "model", "id"}`, plus `"tokensEstimated": true` when the vendor's stream had no
counts), or `error` (the contract's error body) after which the stream ends. A comment line
(`: keep-alive`) goes out every `HEARTBEAT_S` while the vendor is silent; a vendor silent for
`LLM_UPSTREAM_TIMEOUT_S` ends the stream with `provider_timeout`, and so does a stream still
running `LLM_STREAM_TIMEOUT_S` after its first piece (its partial reply stored, interrupted). A
reply reaching `reply_cap` characters is cut there: the vendor call is closed, the reply stored
marked interrupted, and the stream ends with `done` carrying `"truncated": true` and a `warning`.

Everything that can fail before the first byte (config, key, the vendor's answer to the request
itself) is checked in `open_chat_stream`, so it is the normal JSON error. After a complete stream
the message and reply are stored as the non-streaming route stores them; when the client goes away
or the vendor fails mid-stream, the vendor call is closed at once and the message is stored with
the partial reply, marked interrupted. Storing is shielded from the cancellation that a client
disconnect brings. When the database fails after a complete reply, the stream still ends with
`done` (`id: null` and a `warning` that the reply was not saved): the client has every delta of
an answer it paid for, which `error` would tell it to throw away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
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
from llm_service.services.chat import (
    NOT_STORED,
    TRUNCATED,
    PreparedChat,
    Spend,
    calling_vendor,
    checked_usage,
    join_warnings,
    prepare,
    provider_failure,
    reply_cap,
    store_exchange,
)
from llm_service.services.history import NewMessage

log = logging.getLogger("llm_service.chat_stream")

HEARTBEAT_S = 15.0
HEARTBEAT = b": keep-alive\n\n"
CLOSE_VENDOR_WITHIN_S = 1.0


class StreamDeadline(ProviderError):
    """The stream ran past `LLM_STREAM_TIMEOUT_S`."""

    def __init__(self) -> None:
        super().__init__(FailureKind.TIMEOUT)


def deadline_passed(name: str, stream_timeout_s: float) -> ServiceError:
    return ServiceError(
        504,
        "provider_timeout",
        f"{name} was still writing after {stream_timeout_s:g} seconds, the longest a streamed "
        "answer may take; the part you saw is saved: ask for a shorter answer.",
    )


def internal_error(request_id: str) -> ServiceError:
    return ServiceError(
        500, "internal_error",
        f"Something went wrong on our side; if it persists, report request id {request_id}.",
    )


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


@dataclass(slots=True)
class _Usage:
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    cached_input_tokens: int | None = None

    def merge(self, event: StreamEvent) -> None:
        for name in ("model", "input_tokens", "output_tokens", "finish_reason",
                     "cached_input_tokens"):
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
        self._cap = reply_cap(runtime, prepared.request)
        self._truncated = False

    async def sse(self, request_id: str, on_end: Callable[[], None]) -> AsyncIterator[bytes]:
        """The response body. `on_end` runs once the stream is over, however it ends."""
        stored = False
        try:
            try:
                async with aclosing(self._pieces()) as pieces:
                    async for piece in pieces:
                        if piece is None:
                            yield HEARTBEAT
                            continue
                        room = self._cap - len(self._text.raw)
                        if len(piece) > room:  # at the cap: the rest is not wanted, nor paid for
                            piece, self._truncated = piece[:room], True
                        if delta := self._text.feed(piece):
                            yield sse("delta", {"text": delta})
                        if self._truncated:
                            break  # leaving _pieces closes the vendor call
            except ProviderError as exc:
                self._runtime.metrics.vendor_error(self._provider, exc.kind)
                name = self._prepared.adapter.display_name
                if isinstance(exc, StreamDeadline):
                    error = deadline_passed(name, self._runtime.settings.stream_timeout_s)
                else:
                    error = provider_failure(exc, name, self._runtime.settings.upstream_timeout_s)
                stored = True
                if exc.kind in (FailureKind.REFUSED, FailureKind.EMPTY):
                    await self._spend.settle(0, None)  # declined or empty: nothing to keep
                else:
                    await self._store_partial(request_id)
                yield sse("error", self._error_body(error, request_id))
                return
            except Exception:
                log.exception("request %s: stream failed", request_id)
                stored = True
                await self._store_partial(request_id)
                yield sse("error", self._error_body(internal_error(request_id), request_id))
                return
            if rest := self._text.finish():
                yield sse("delta", {"text": rest})
            stored = True
            try:
                done = await self._store(interrupted=self._truncated)
            except Exception as exc:  # not an outage: those end with `done` and a warning
                log.error("request %s: storing the stream failed (%s)", request_id,
                          type(exc).__name__)
                yield sse("error", self._error_body(internal_error(request_id), request_id))
                return
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._runtime.settings.stream_timeout_s
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
                    left_s = deadline - loop.time()
                    if left_s <= 0:
                        raise StreamDeadline()
                    wait_s = min(HEARTBEAT_S, timeout_s - silent_s, left_s)
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
        usage = checked_usage(
            self._usage.model, self._usage.input_tokens, self._usage.output_tokens,
            request=self._prepared.request, reply=self._text.raw,
            configured_model=self._prepared.configured_model,
        )
        reply = self._text.text()
        hosts = self._runtime.settings.allowed_image_hosts
        cost = self._spend.cost(usage.model, usage.input_tokens, usage.output_tokens,
                                self._usage.cached_input_tokens)
        self._runtime.metrics.usage(self._provider, usage.model, usage.input_tokens,
                                    usage.output_tokens, cost)
        with anyio.CancelScope(shield=True):
            try:
                reply_id = await store_exchange(self._runtime, self._user_id, self._provider, [
                    NewMessage("user", sanitize(self._body.message, image_hosts=hosts),
                               usage.input_tokens,
                               tokens_estimated=usage.estimated),
                    NewMessage("assistant", reply, usage.output_tokens,
                               interrupted=interrupted, tokens_estimated=usage.estimated,
                               model=usage.model, input_tokens=usage.input_tokens,
                               output_tokens=usage.output_tokens, cost_usd=cost,
                               cached_input_tokens=min(self._usage.cached_input_tokens or 0,
                                                       usage.input_tokens),
                               finish_reason="length"
                               if self._usage.finish_reason == "length" else None),
                ])
            finally:
                await self._spend.settle(usage.tokens, cost)
        done: dict[str, Any] = {
            "response": reply,
            "tokensUsed": usage.tokens,
            "inputTokens": usage.input_tokens,
            "outputTokens": usage.output_tokens,
            "model": usage.model,
            "id": reply_id,
            "costUsd": float(cost) if cost is not None else None,
        }
        if usage.estimated:
            done["tokensEstimated"] = True
        if self._truncated:
            done["truncated"] = True
        if self._usage.finish_reason == "length":  # the vendor cut it at maxTokens
            done["finishReason"] = "length"
        warning = join_warnings(NOT_STORED if reply_id is None else None,
                                TRUNCATED.format(cap=self._cap) if self._truncated else None,
                                self._spend.warning)
        if warning:
            done["warning"] = warning
        return done

    async def _store_partial(self, request_id: str) -> None:
        """Store the partial reply of a failed stream; failing to must not keep the stream from
        ending with its `error` event."""
        try:
            await self._store(interrupted=True)
        except Exception as exc:
            log.error("request %s: storing the partial stream failed (%s)", request_id,
                      type(exc).__name__)

    @staticmethod
    def _error_body(error: ServiceError, request_id: str) -> dict[str, Any]:
        return {"success": False, "error": error.message, "code": error.code,
                "requestId": request_id}
