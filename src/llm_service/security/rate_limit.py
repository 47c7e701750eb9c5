"""Per-user rate limits (moving window) and a per-user cap on chats in flight.

Counters live in process memory (`LocalWindows`), or in Redis when `REDIS_URL` is set (the
`limits` package's moving window, its Lua scripts), so a limit holds across processes and
replicas. The chat and the default limit count under keys of their own (their
namespaces differ), also when their values are equal. When Redis cannot be reached the limiter
fails over to its in-process counters for `REDIS_RETRY_AFTER_S` and logs one warning each time:
limits still hold per process, and an outage of Redis does not take the chat down. The key is the
user id from the token, never an address or a header the client controls.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
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


class LocalWindows:
    """Moving windows in this process's memory: for each limit and user, the times of the hits
    still in the window, oldest first. A hit is allowed while fewer than the limit's amount are
    in its window; the window resets when its oldest hit leaves it (the same rule as the
    `limits` package's moving window, which counts in Redis).

    Not the `limits` package's in-memory storage: after nearly every hit it started a clean-up
    task that hopped to a worker thread for each key (86 µs of CPU per counted request against
    5 µs here, `python -m bench.micro`, 2026-12-04). Here a key's expired hits are dropped when
    it is hit, and every `SWEEP_EVERY` hits (or as many as there are keys, if more) the keys whose
    hits all left their window are dropped, so memory holds only users with hits in a window."""

    SWEEP_EVERY = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, deque[float]]] = {}
        self._since_sweep = 0

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, item: RateLimitItem, key: str) -> LimitState:
        now = self._clock()
        name = item.key_for(key)
        found = self._windows.get(name)
        if found is None:
            window, hits = float(item.get_expiry()), deque[float]()
            self._windows[name] = (window, hits)
        else:
            window, hits = found
        while hits and hits[0] <= now - window:
            hits.popleft()
        allowed = len(hits) < item.amount
        if allowed:
            hits.append(now)
        self._since_sweep += 1
        if self._since_sweep >= max(self.SWEEP_EVERY, len(self._windows)):
            self._sweep(now)
        reset = max(0, math.ceil(window - (now - hits[0]))) if hits else 0
        return LimitState(item.amount, max(0, item.amount - len(hits)), reset, allowed)

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        idle = [name for name, (window, hits) in self._windows.items()
                if not hits or hits[-1] <= now - window]
        for name in idle:
            del self._windows[name]


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.chat = _named_limit(settings.rate_limit_chat, "chat")
        self.default = _named_limit(settings.rate_limit_default, "default")
        self._local = LocalWindows()
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
        return self._local.hit(item, key)

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
