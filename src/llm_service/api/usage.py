"""Usage figures for the settings page, budgets, and platform-wide figures for admins."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from llm_service.api.deps import ConnectionDep, CurrentUser, RuntimeDep
from llm_service.api.responses import error_responses
from llm_service.db.models import utcnow
from llm_service.errors import ServiceError
from llm_service.jsonutil import JSONResponse
from llm_service.schemas import AdminUsageOut, LimitsOut, UsageOut
from llm_service.security.jwt import Principal
from llm_service.services import budgets, usage

router = APIRouter(prefix="/llm", tags=["usage"])

MAX_PERIOD_DAYS = 366


def _bad_period(field: str, sentence: str, reason: str) -> ServiceError:
    return ServiceError(422, "validation_error", f"Check the request: {field} {sentence}.",
                        details=[{"field": field, "reason": reason}])


def _day(value: str | None, field: str) -> date | None:
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise _bad_period(field, "must be a date like 2026-11-01",
                          "not a date (YYYY-MM-DD)") from None
    if day == date.max:  # the period ends at the next midnight, which does not exist
        raise _bad_period(field, "must be 9999-12-30 or earlier", "after the last usable day")
    return day


def _period(start: str | None, end: str | None) -> tuple[date, date]:
    """The UTC days asked for, at most MAX_PERIOD_DAYS of them; `from` after `to` is an empty
    period (all figures zero)."""
    today = utcnow().date()
    first, last = _day(start, "from") or today.replace(day=1), _day(end, "to") or today
    if (last - first).days + 1 > MAX_PERIOD_DAYS:
        raise _bad_period("to", f"must be at most {MAX_PERIOD_DAYS} days after from",
                          f"the period is longer than {MAX_PERIOD_DAYS} days")
    return first, last


_DATE = {"format": "date"}
From = Annotated[str | None, Query(alias="from", json_schema_extra=_DATE, description="First "
                                   "UTC day (YYYY-MM-DD); default the first of this month.")]
To = Annotated[str | None, Query(alias="to", json_schema_extra=_DATE, description="Last UTC "
                                 "day, included (YYYY-MM-DD); default today.")]


async def period(start: From = None, end: To = None) -> tuple[date, date]:
    """The asked-for period, checked (422) before a database connection is taken."""
    return _period(start, end)


PeriodDep = Annotated[tuple[date, date], Depends(period)]


async def admin_user(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise ServiceError(403, "forbidden", "Only administrators can see platform-wide usage.")
    return user


@router.get(
    "/usage",
    summary="The user's requests, tokens and estimated cost, grouped and in total",
    response_model=None,
    responses={200: {"model": UsageOut}, **error_responses(401, 403, 422, 503)},
)
async def my_usage(
    user: CurrentUser,
    period: PeriodDep,
    conn: ConnectionDep,
    group_by: Annotated[usage.GroupBy, Query(alias="groupBy")] = "day",
) -> JSONResponse:
    first, last = period
    groups = await usage.grouped(conn, group_by, first, last, user.user_id)
    total = await usage.total(conn, first, last, user.user_id)
    return JSONResponse({"from": first.isoformat(), "to": last.isoformat(), "groupBy": group_by,
                         "groups": groups, "total": total})


@router.get(
    "/usage/limits",
    summary="The user's monthly limits and what is used of them",
    response_model=None,
    responses={200: {"model": LimitsOut}, **error_responses(401, 403, 503)},
)
async def my_limits(user: CurrentUser, runtime: RuntimeDep) -> JSONResponse:
    now = utcnow()
    budget = budgets.budget_for(runtime.settings, user.role)
    month, _, resets = budgets.month_bounds(now)
    async with runtime.engine.begin() as conn:  # reconciling is a delete and an update
        figures = await budgets.standing(conn, user.user_id, now)
    body: dict[str, Any] = {
        "month": month,
        "resetsAt": resets,
        "tokens": {"limit": budget.tokens, "used": figures.used_tokens,
                   "reserved": figures.reserved_tokens},
        "costUsd": {"limit": float(budget.cost_usd) if budget.cost_usd is not None else None,
                    "used": float(figures.used_cost_usd),
                    "reserved": float(figures.reserved_cost_usd)},
        "warning": budgets.warning(budget, figures, now),
    }
    return JSONResponse(body)


@router.get(
    "/admin/usage",
    summary="Platform-wide usage by provider, model and day, and the top users by cost (ADMIN)",
    response_model=None,
    responses={200: {"model": AdminUsageOut}, **error_responses(401, 403, 422, 503)},
)
async def admin_usage(
    user: Annotated[Principal, Depends(admin_user)],
    period: PeriodDep,
    conn: ConnectionDep,
) -> JSONResponse:
    first, last = period
    body = {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "byProvider": await usage.grouped(conn, "provider", first, last),
        "byModel": await usage.grouped(conn, "model", first, last),
        "byDay": await usage.grouped(conn, "day", first, last),
        "topUsers": await usage.top_users(conn, first, last),
        "total": await usage.total(conn, first, last),
    }
    return JSONResponse(body)


