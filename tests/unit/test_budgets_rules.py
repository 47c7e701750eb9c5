"""Budget rules without a database: limits per role from settings, month edges at fixed dates,
which limit a refusal names, and the 80% warning's threshold and wording."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from llm_service.services.budgets import (
    Budget,
    Standing,
    budget_exceeded,
    budget_for,
    estimate_input_tokens,
    estimate_tokens,
    month_bounds,
    reservation_ttl_s,
    warning,
)
from tests.conftest import make_settings

NOW = datetime(2026, 5, 17, 12, 0, tzinfo=UTC)


def figures(tokens: int = 0, reserved: int = 0, cost: str = "0", reserved_cost: str = "0"
            ) -> Standing:
    return Standing(tokens, reserved, Decimal(cost), Decimal(reserved_cost))


def test_budgets_come_from_each_roles_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, "sqlite+aiosqlite://",
        LLM_BUDGET_TOKENS_CLIENT=1000, LLM_BUDGET_COST_USD_CLIENT=2.5,
        LLM_BUDGET_TOKENS_STAFF=5000, LLM_BUDGET_COST_USD_ADMIN=0.1,
    )
    assert budget_for(settings, "CLIENT") == Budget(1000, Decimal("2.5"))
    assert budget_for(settings, "STAFF") == Budget(5000, None)
    assert budget_for(settings, "ADMIN") == Budget(None, Decimal("0.1"))
    assert budget_for(settings, "CLIENT").limited and budget_for(settings, "ADMIN").limited


def test_no_settings_means_no_budget(tmp_path: Path) -> None:
    budget = budget_for(make_settings(tmp_path, "sqlite+aiosqlite://"), "CLIENT")
    assert budget == Budget(None, None) and not budget.limited


def test_a_role_without_budget_settings_has_no_budget(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite://", LLM_BUDGET_TOKENS_CLIENT=5,
                             LLM_BUDGET_COST_USD_CLIENT=1)
    assert budget_for(settings, "GUEST") == Budget(None, None)


@pytest.mark.parametrize(
    ("now", "month", "start", "end"),
    [
        (datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "2025-12",
         datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "2026-01",
         datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        (datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC), "2026-01",
         datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        (datetime(2026, 2, 1, 0, 0, tzinfo=UTC), "2026-02",
         datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
        (datetime(2028, 2, 29, 8, 30, tzinfo=UTC), "2028-02",
         datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
        (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), "2026-11",
         datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        # Months are UTC months: 00:30 on January 1st in Paris is still December in UTC.
        (datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "2025-12",
         datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_month_bounds_at_the_edges(
    now: datetime, month: str, start: datetime, end: datetime
) -> None:
    assert month_bounds(now) == (month, start, end)
    assert month_bounds(now)[1].tzinfo == UTC


def test_month_bounds_do_not_depend_on_the_hosts_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        # 00:30 UTC on January 1st is still December 31st in New York: the month is January.
        assert month_bounds(datetime(2026, 1, 1, 0, 30, tzinfo=UTC))[0] == "2026-01"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_input_estimate_never_undercounts_ascii() -> None:
    # At least the rule of thumb of four characters a token, rounded up.
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") >= 1
    assert estimate_tokens("abcde") >= 2
    assert 100 <= estimate_tokens("x" * 400) <= 400  # and never more than a token a byte


def test_a_refusal_names_the_token_limit_and_the_reset_day() -> None:
    error = budget_exceeded(Budget(100, None), figures(90), 20,
                            datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert (error.status, error.code) == (429, "budget_exceeded")
    assert error.message == (
        "This message would go past your monthly token limit of 100 tokens; it resets on "
        "2026-01-01 (UTC). Ask for a shorter answer (a lower maxTokens) or wait until then.")


def test_a_refusal_names_the_cost_limit_when_tokens_still_fit() -> None:
    error = budget_exceeded(Budget(1_000_000, Decimal("1.5")), figures(10, cost="1.49"), 20, NOW)
    assert "past your monthly cost limit of $1.50; it resets on 2026-06-01 (UTC)" in error.message


def test_a_refusal_names_the_token_limit_when_both_could_be_over() -> None:
    both = Budget(100, Decimal("1"))
    # Exactly at the token limit still fits: then only the cost limit can have refused it.
    assert "cost limit of $1.00" in budget_exceeded(both, figures(60, 20), 20, NOW).message
    assert "token limit of 100 tokens" in budget_exceeded(both, figures(60, 20), 21, NOW).message
    assert "token limit of 100 tokens" in budget_exceeded(both, figures(61, 20), 20, NOW).message
    assert "token limit of 100 tokens" in budget_exceeded(both, figures(60, 21), 20, NOW).message
    only_cost = budget_exceeded(Budget(None, Decimal("2")), figures(10**9), 10**9, NOW)
    assert "cost limit of $2.00" in only_cost.message


def test_big_token_limits_are_written_with_thousands_separators() -> None:
    error = budget_exceeded(Budget(1_234_567, None), figures(), 2_000_000, NOW)
    assert "monthly token limit of 1,234,567 tokens" in error.message


@pytest.mark.parametrize(
    ("used", "reserved", "expected"),
    [(79, 0, None), (80, 0, 80), (60, 20, 80), (100, 0, 100), (95, 10, 105)],
)
def test_the_token_warning_starts_at_80_percent(
    used: int, reserved: int, expected: int | None
) -> None:
    text = warning(Budget(100, None), figures(used, reserved), NOW)
    if expected is None:
        assert text is None
    else:
        assert text == (f"You have used {expected}% of your monthly token limit "
                        f"({used + reserved:,} of 100); it resets on 2026-06-01 (UTC).")


def test_the_token_warning_writes_big_figures_with_separators() -> None:
    text = warning(Budget(10_000, None), figures(8_500), NOW)
    assert text is not None and "(8,500 of 10,000)" in text and "85%" in text


@pytest.mark.parametrize(
    ("cost", "reserved", "expected"),
    [("1.59", "0", None), ("1.60", "0", "80%"), ("1.00", "0.60", "80%"), ("2.10", "0", "105%")],
)
def test_the_cost_warning_starts_at_80_percent(
    cost: str, reserved: str, expected: str | None
) -> None:
    text = warning(Budget(None, Decimal("2")), figures(cost=cost, reserved_cost=reserved), NOW)
    if expected is None:
        assert text is None
    else:
        spent = Decimal(cost) + Decimal(reserved)
        assert text == (f"You have used {expected} of your monthly cost limit (${spent:.2f} of "
                        "$2.00); it resets on 2026-06-01 (UTC).")


def test_the_token_warning_comes_first_and_the_cost_one_still_counts() -> None:
    both = Budget(100, Decimal("1"))
    assert "token limit" in (warning(both, figures(90, cost="0.9"), NOW) or "")
    assert "cost limit" in (warning(both, figures(10, cost="0.9"), NOW) or "")
    assert warning(both, figures(10, cost="0.1"), NOW) is None


def test_the_input_estimate_adds_each_turns_framing() -> None:
    assert estimate_input_tokens([]) == 0
    assert estimate_input_tokens([""]) == 8
    assert estimate_input_tokens(["abcdefgh", "你好", "x"]) == 2 + 2 + 1 + 3 * 8


def test_a_reservation_outlives_the_longest_chat_by_a_minute(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite://", LLM_UPSTREAM_TIMEOUT_S=30,
                             LLM_STREAM_TIMEOUT_S=200)
    assert reservation_ttl_s(settings) == 30 + 200 + 60
