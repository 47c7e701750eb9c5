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

from llm_service.errors import ServiceError, error_body
from llm_service.jsonutil import dumps
from llm_service.providers.base import FailureKind, ProviderError, StreamDelta, StreamEvent
from llm_service.runtime import Runtime
from llm_service.schemas import ChatIn
from llm_service.security.jwt import Principal
from llm_service.security.sanitize import StreamSanitizer
from llm_service.services.chat import ChatCall, PreparedChat, VendorReply, begin_chat

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
    runtime: Runtime, *, user: Principal, provider: str, body: ChatIn,
    prepared: PreparedChat | None = None,
) -> ChatStream:
    """The vendor's stream opened (its first event in), for the default thread or, with
    `prepared`, a conversation."""
    call = await begin_chat(runtime, user=user, provider=provider, body=body, prepared=prepared)
    async with call.calling_vendor():
        first, events = await runtime.providers.open_stream(
            provider, call.prepared.request, call.prepared.api_key
        )
    return ChatStream(call, first, events)


class ChatStream:
    def __init__(
        self, call: ChatCall, first: StreamEvent | None, events: AsyncIterator[StreamEvent]
    ) -> None:
        self._call = call
        self._runtime = call.runtime
        self._first = first
        self._events = events
        self._usage = _Usage()
        self._text = StreamSanitizer(image_hosts=call.runtime.settings.allowed_image_hosts)
        self._cap = call.reply_cap
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
                self._runtime.metrics.vendor_error(self._call.provider, exc.kind)
                if isinstance(exc, StreamDeadline):
                    error = deadline_passed(self._call.prepared.adapter.display_name,
                                            self._runtime.settings.stream_timeout_s)
                else:
                    error = self._call.failure(exc)
                stored = True
                if exc.kind in (FailureKind.REFUSED, FailureKind.EMPTY):
                    await self._call.spend.settle(0, None)  # declined or empty: nothing to keep
                else:
                    await self._store_partial(request_id)
                yield sse("error", error_body(error, request_id))
                return
            except Exception:
                log.exception("request %s: stream failed", request_id)
                stored = True
                await self._store_partial(request_id)
                yield sse("error", error_body(internal_error(request_id), request_id))
                return
            if rest := self._text.finish():
                yield sse("delta", {"text": rest})
            stored = True
            try:
                done = await self._store(interrupted=self._truncated)
            except Exception as exc:  # not an outage: those end with `done` and a warning
                log.error("request %s: storing the stream failed (%s)", request_id,
                          type(exc).__name__)
                yield sse("error", error_body(internal_error(request_id), request_id))
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
        """The stream's answer recorded as the JSON route records its own; `done`'s body."""
        answer = await self._call.record(VendorReply(
            text=self._text.raw,
            shown=self._text.text(),
            model=self._usage.model,
            input_tokens=self._usage.input_tokens,
            output_tokens=self._usage.output_tokens,
            cached_input_tokens=self._usage.cached_input_tokens,
            finish_reason=self._usage.finish_reason,
            interrupted=interrupted,
            truncated=self._truncated,
        ))
        return answer.body()

    async def _store_partial(self, request_id: str) -> None:
        """Store the partial reply of a failed stream; failing to must not keep the stream from
        ending with its `error` event."""
        try:
            await self._store(interrupted=True)
        except Exception as exc:
            log.error("request %s: storing the partial stream failed (%s)", request_id,
                      type(exc).__name__)
