"""History and usage queries on a large table: one million stored messages in a fresh
PostgreSQL database, then the queries the routes run, timed (median of 5 runs).

    .venv/bin/python -m bench.history_scale [--rows 1000000] [--pg postgresql://postgres@127.0.0.1:5432/test]

The table gets 1,000 users over 90 days; user 1 is a heavy user with a tenth of all rows. The
database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from llm_service.db import migrate
from llm_service.db.session import create_engine
from llm_service.providers.registry import provider_ids
from llm_service.services import budgets, history, usage
from llm_service.settings import load_settings

PROVIDERS = provider_ids()


async def fill(dsn: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn)
    now = datetime.now(UTC)
    rng = random.Random(7)
    batch: list[tuple[object, ...]] = []
    for i in range(rows):
        user = 1 if i % 10 == 0 else rng.randint(2, 1000)
        reply = i % 2 == 1
        created = now - timedelta(seconds=rng.randint(0, 90 * 86400))
        batch.append((
            user, PROVIDERS[i % len(PROVIDERS)], "assistant" if reply else "user", f"message {i}",
            rng.randint(5, 500), created, False, False,
            "gpt-4o" if reply else None, rng.randint(5, 500) if reply else None,
            rng.randint(5, 500) if reply else None,
            Decimal("0.001234") if reply else None,
        ))
        if len(batch) == 50_000:
            await conn.copy_records_to_table("llm_chat_history", records=batch, columns=[
                "user_id", "provider", "role", "content", "tokens_used", "created_at",
                "interrupted", "tokens_estimated", "model", "input_tokens", "output_tokens",
                "cost_usd"])
            batch.clear()
    await conn.execute("ANALYZE llm_chat_history")
    await conn.close()


async def timed(label: str, action: Callable[[], Awaitable[object]]) -> None:
    await action()
    samples = []
    for _ in range(5):
        began = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - began) * 1000)
    print(f"| {label} | {statistics.median(samples):.1f} ms |")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    name = f"llm_scale_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.pg)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = args.pg.rsplit("/", 1)[0] + "/" + name
    engine = create_engine(load_settings(DATABASE_URL=dsn))
    try:
        await migrate.upgrade(engine)
        began = time.perf_counter()
        await fill(dsn, args.rows)
        print(f"filled {args.rows:,} rows in {time.perf_counter() - began:.0f} s\n")
        today = datetime.now(UTC).date()
        month = today.replace(day=1)
        print("| query (user 1 has 1/10 of the rows) | median |\n|---|---|")
        async with engine.connect() as conn:
            ac = await conn.execution_options(isolation_level="AUTOCOMMIT")

            async def page() -> object:
                from sqlalchemy.ext.asyncio import AsyncSession

                async with AsyncSession(bind=ac) as session:
                    return await history.page(session, 1, "openai", limit=50, offset=0)

            await timed("history page (50 newest + total), heavy user", page)
            await timed("chat context (20 newest)",
                        lambda: history.recent_turns(ac, 1, "openai", 20))
            for group in ("day", "provider", "model"):
                await timed(f"usage this month by {group}, heavy user",
                            lambda g=group: usage.grouped(ac, g, month, today, 1))
            await timed("usage 90 days by day, heavy user",
                        lambda: usage.grouped(ac, "day", today - timedelta(days=90), today, 1))
            await timed("usage this month by day, typical user",
                        lambda: usage.grouped(ac, "day", month, today, 500))
            await timed("budget standing (the month's row), heavy user",
                        lambda: budgets.standing(ac, 1, datetime.now(UTC)))
            await timed("admin: platform by model, this month",
                        lambda: usage.grouped(ac, "model", month, today))
            await timed("admin: top users, this month", lambda: usage.top_users(ac, month, today))
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
