"""`retried`: one plain attempt; after a retryable failure, tenacity's rules count that attempt."""

from __future__ import annotations

import pytest
from tenacity import AsyncRetrying, stop_after_attempt, wait_none

from llm_service.retries import retried


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def calls_failing(times: int, error: type[Exception] = Flaky) -> tuple[list[int], object]:
    seen: list[int] = []

    async def call() -> str:
        seen.append(len(seen) + 1)
        if len(seen) <= times:
            raise error(f"attempt {len(seen)}")
        return f"answer after {len(seen)}"

    return seen, call


def three_attempts(spent: list[float]):  # type: ignore[no-untyped-def]
    def retrying(spent_s: float) -> AsyncRetrying:
        spent.append(spent_s)
        return AsyncRetrying(stop=stop_after_attempt(3), wait=wait_none(), reraise=True)
    return retrying


async def test_a_first_success_never_builds_a_retrying() -> None:
    seen, call = calls_failing(0)
    built: list[float] = []
    answer = await retried(call, retryable=lambda e: True, retrying=three_attempts(built))
    assert (answer, seen, built) == ("answer after 1", [1], [])


async def test_a_retryable_failure_counts_as_the_first_of_the_attempts() -> None:
    seen, call = calls_failing(2)
    built: list[float] = []
    answer = await retried(call, retryable=lambda e: isinstance(e, Flaky),
                           retrying=three_attempts(built))
    assert answer == "answer after 3"
    assert seen == [1, 2, 3]  # three attempts in all, the first outside tenacity
    assert len(built) == 1 and built[0] >= 0


async def test_attempts_end_at_the_limit_with_the_last_failure() -> None:
    seen, call = calls_failing(5)
    with pytest.raises(Flaky, match="attempt 3"):
        await retried(call, retryable=lambda e: True, retrying=three_attempts([]))
    assert seen == [1, 2, 3]


async def test_a_failure_that_is_not_retryable_is_raised_at_once() -> None:
    seen, call = calls_failing(1, Fatal)
    built: list[float] = []
    with pytest.raises(Fatal, match="attempt 1"):
        await retried(call, retryable=lambda e: isinstance(e, Flaky),
                      retrying=three_attempts(built))
    assert (seen, built) == ([1], [])
