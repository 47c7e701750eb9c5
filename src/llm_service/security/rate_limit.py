"""Per-user rate limits (moving window, the `limits` package's async API) and a per-user cap on
chats in flight.

Counters live in process memory, or in Redis when `REDIS_URL` is set, so a limit holds across
processes and replicas. The chat and the default limit count under keys of their own (their
namespaces differ), also when their values are equal. When Redis cannot be reached the limiter
fails over to its in-process counters for `REDIS_RETRY_AFTER_S` and logs one warning each time:
limits still hold per process, and an outage of Redis does not take the chat down. The key is the
user id from the token, never an address or a header the client controls.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from llm_service.errors import ServiceError
from llm_service.settings import Settings

log = logging.getLogger("llm_service.rate_limit")

REDIS_TIMEOUT_S = 0.5
REDIS_RETRY_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class LimitState:
    """What the `X-RateLimit-*` headers report after a request was counted (or refused)."""

    limit: int
    remaining: int
    reset_after_s: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_after_s),
        }


def rate_limited(state: LimitState, what: str) -> ServiceError:
    wait = max(1, state.reset_after_s)
    return ServiceError(
        429,
        "rate_limited",
        f"You have sent too many {what} ({state.limit} per window): try again in {wait} "
        "seconds.",
        headers={"Retry-After": str(wait), **state.headers()},
    )


def _named_limit(value: str, name: str) -> RateLimitItem:
    """`value` (e.g. 100/hour) counted under the namespace `llm-<name>`: the key of a counter
    names its limit, so two limits with equal values never share one."""
    item = parse(value)
    return type(item)(item.amount, item.multiples, namespace=f"llm-{name}")


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.chat = _named_limit(settings.rate_limit_chat, "chat")
        self.default = _named_limit(settings.rate_limit_default, "default")
        self._local = MovingWindowRateLimiter(storage_from_string("async+memory://"))
        self._shared: MovingWindowRateLimiter | None = None
        if settings.redis_url:
            url = settings.redis_url
            storage = storage_from_string(
                url if url.startswith("async+") else f"async+{url}",
                wrap_exceptions=True,
                connect_timeout=REDIS_TIMEOUT_S,
                stream_timeout=REDIS_TIMEOUT_S,
            )
            self._shared = MovingWindowRateLimiter(storage)  # type: ignore[arg-type]
        self._shared_down_until = 0.0

    @property
    def uses_redis(self) -> bool:
        return self._shared is not None

    async def hit(self, item: RateLimitItem, user_id: int) -> LimitState:
        """Count one request of the user against `item`; `allowed` is False when over it."""
        key = str(user_id)
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                return await self._hit(self._shared, item, key)
            except Exception as exc:  # any storage failure: count locally for a while
                self._shared_down_until = time.monotonic() + REDIS_RETRY_AFTER_S
                log.warning(
                    "rate-limit storage unreachable (%s); counting in this process for %gs",
                    type(exc).__name__, REDIS_RETRY_AFTER_S,
                )
        return await self._hit(self._local, item, key)

    @staticmethod
    async def _hit(strategy: MovingWindowRateLimiter, item: RateLimitItem, key: str) -> LimitState:
        allowed = await strategy.hit(item, key)
        stats = await strategy.get_window_stats(item, key)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return LimitState(item.amount, stats.remaining, reset, allowed)


class ConcurrencyCap:
    """At most `limit` chats in flight per user in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Checked and changed without an await in between, so no lock is needed.
        self._in_flight: Counter[int] = Counter()

    def acquire(self, user_id: int) -> None:
        """Take a slot or raise 429; every `acquire` needs exactly one `release`."""
        if self._in_flight[user_id] >= self.limit:
            raise ServiceError(
                429,
                "rate_limited",
                f"You already have {self.limit} chats waiting for an answer: wait for one to "
                "finish, then send again.",
                headers={"Retry-After": "1"},
            )
        self._in_flight[user_id] += 1

    def release(self, user_id: int) -> None:
        self._in_flight[user_id] -= 1
        if self._in_flight[user_id] <= 0:
            del self._in_flight[user_id]
