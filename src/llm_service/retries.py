"""The one way a call is retried here: tried once, then under tenacity only when that failed.

tenacity's `AsyncRetrying` costs about 25 µs and one more layer of coroutines per use even when
the first attempt succeeds, which on the chat route (the vendor call and the store of both rows)
showed as 5 % of the service's CPU under py-spy (bench/README.md). `retried` makes the first
attempt a plain `await`; a failure that `retryable` accepts is replayed as tenacity's first
attempt, so the attempt count, the waits and the stop rules are exactly those of the
`AsyncRetrying` that `retrying(spent_s)` returns (`spent_s`: the first attempt's seconds, for a
stop rule that counts from the start)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying

T = TypeVar("T")


async def retried(call: Callable[[], Awaitable[T]], *,
                  retryable: Callable[[BaseException], bool],
                  retrying: Callable[[float], AsyncRetrying]) -> T:
    started = time.monotonic()
    try:
        return await call()
    except Exception as exc:
        if not retryable(exc):
            raise
        first: Exception | None = exc
    spent = time.monotonic() - started

    async def again() -> T:
        nonlocal first
        if first is not None:
            failure, first = first, None
            raise failure
        return await call()

    return await retrying(spent)(again)
