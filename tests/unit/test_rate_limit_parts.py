"""The rate limiter's parts in process memory: the state it reports, the 429 it builds, and the
per-user cap on chats in flight."""

from __future__ import annotations

from pathlib import Path

import pytest
from limits import parse

from llm_service.errors import ServiceError
from llm_service.security.rate_limit import (
    ConcurrencyCap,
    LimitState,
    LocalWindows,
    RateLimiter,
    rate_limited,
)
from tests.conftest import make_settings


def test_headers_report_limit_remaining_and_reset() -> None:
    assert LimitState(10, 4, 37, True).headers() == {
        "X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "37"}


@pytest.mark.parametrize(("reset", "wait"), [(0, 1), (1, 1), (2, 2), (59, 59)])
def test_a_refusal_waits_at_least_one_second(reset: int, wait: int) -> None:
    error = rate_limited(LimitState(5, 0, reset, False), "chat messages")
    assert (error.status, error.code) == (429, "rate_limited")
    assert error.message == (f"You have sent too many chat messages (5 per window): try again in "
                             f"{wait} seconds.")
    assert error.headers == {"Retry-After": str(wait), "X-RateLimit-Limit": "5",
                             "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}


async def test_in_memory_counts_are_per_user_and_per_limit(tmp_path: Path) -> None:
    limiter = RateLimiter(make_settings(tmp_path, "sqlite+aiosqlite://",
                                        RATE_LIMIT_CHAT="2/minute", RATE_LIMIT_DEFAULT="3/hour"))
    chats = [await limiter.hit(limiter.chat, 1) for _ in range(3)]
    assert [(s.allowed, s.remaining, s.limit) for s in chats] == [
        (True, 1, 2), (True, 0, 2), (False, 0, 2)]
    assert 1 <= chats[-1].reset_after_s <= 60
    other = await limiter.hit(limiter.default, 1)
    assert (other.allowed, other.remaining, other.limit) == (True, 2, 3)
    assert 60 < other.reset_after_s <= 3600
    assert (await limiter.hit(limiter.chat, 2)).remaining == 1


def test_the_cap_refuses_the_chat_over_it_and_frees_slots() -> None:
    cap = ConcurrencyCap(2)
    cap.acquire(1)
    cap.acquire(1)
    cap.acquire(2)  # another user's slots are their own
    with pytest.raises(ServiceError) as caught:
        cap.acquire(1)
    assert (caught.value.status, caught.value.code) == (429, "rate_limited")
    assert caught.value.message == ("You already have 2 chats waiting for an answer: wait for one "
                                    "to finish, then send again.")
    assert caught.value.headers == {"Retry-After": "1"}
    cap.release(1)
    cap.acquire(1)  # a released slot can be taken again


def test_a_release_frees_exactly_one_slot() -> None:
    cap = ConcurrencyCap(2)
    cap.acquire(1)
    cap.acquire(1)
    cap.release(1)  # one chat still in flight
    cap.acquire(1)
    with pytest.raises(ServiceError):
        cap.acquire(1)
    assert cap._in_flight[1] == 2


def test_idle_users_leave_no_entry_behind() -> None:
    cap = ConcurrencyCap(1)
    for user in range(100):
        cap.acquire(user)
        cap.release(user)
    assert len(cap._in_flight) == 0  # the counter does not grow with every user ever seen


async def test_equal_chat_and_default_limits_count_apart(tmp_path: Path) -> None:
    limiter = RateLimiter(make_settings(tmp_path, "sqlite+aiosqlite://",
                                        RATE_LIMIT_CHAT="2/minute", RATE_LIMIT_DEFAULT="2/minute"))
    assert [(await limiter.hit(limiter.chat, 1)).allowed for _ in range(3)] == [True, True, False]
    assert (await limiter.hit(limiter.default, 1)).remaining == 1
    assert (limiter.chat.namespace, limiter.default.namespace) == ("llm-chat", "llm-default")


def test_a_window_of_several_units_keeps_its_length(tmp_path: Path) -> None:
    limiter = RateLimiter(make_settings(tmp_path, "sqlite+aiosqlite://",
                                        RATE_LIMIT_CHAT="5/2 minutes",
                                        RATE_LIMIT_DEFAULT="100/3 hours"))
    assert (limiter.chat.amount, limiter.chat.get_expiry()) == (5, 120)
    assert (limiter.default.amount, limiter.default.get_expiry()) == (100, 3 * 3600)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_local_window_moves_and_resets_when_its_oldest_hit_leaves() -> None:
    clock = Clock()
    windows = LocalWindows(clock)
    item = parse("2/minute")
    assert windows.hit(item, "1") == LimitState(2, 1, 60, True)
    clock.now += 30
    assert windows.hit(item, "1") == LimitState(2, 0, 30, True)
    clock.now += 10
    assert windows.hit(item, "1") == LimitState(2, 0, 20, False)  # the first hit leaves at 60 s
    clock.now += 20  # exactly 60 s after the first hit: it has left the window
    assert windows.hit(item, "1") == LimitState(2, 0, 30, True)
    assert windows.hit(item, "1") == LimitState(2, 0, 30, False)


def test_local_windows_of_idle_users_are_swept() -> None:
    clock = Clock()
    windows = LocalWindows(clock)
    item = parse("5/minute")
    for user in range(5000):
        windows.hit(item, str(user))
    assert len(windows) == 5000
    clock.now += 61  # every one of those hits has left its window
    # A sweep comes within as many hits as there are keys (at least SWEEP_EVERY): amortized O(1).
    for _ in range(max(LocalWindows.SWEEP_EVERY, len(windows) + 1)):
        windows.hit(item, "active")
    assert len(windows) == 1  # only the user with hits in a window is kept


@pytest.mark.parametrize("now", [1000.1, 2712.35, 123456.789])
def test_a_first_hit_resets_after_exactly_the_window(now: float) -> None:
    clock = Clock()
    clock.now = now  # times where now + window - now is not exactly the window in floats
    assert LocalWindows(clock).hit(parse("3/hour"), "1").reset_after_s == 3600
