"""Conversation queries at scale: a fresh PostgreSQL database with one heavy user (2,000
conversations, one of them 1,000 messages long, and 100,000 messages in its other conversations)
and 200,000 default-thread messages of other users; the queries the routes run, timed (median of
5 runs).

    .venv/bin/python -m bench.conversation_scale [--pg postgresql://postgres@127.0.0.1:5432/test]

The database is dropped at the end.
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
from types import SimpleNamespace
from typing import Any

import asyncpg

from llm_service.catalog import load_catalog
from llm_service.db import migrate
from llm_service.db.session import create_engine, create_session_factory
from llm_service.services import conversations, history
from llm_service.settings import load_settings

HEAVY = 1
LONG_MESSAGES = 998  # room for one more exchange under LLM_MAX_CONVERSATION_MESSAGES
CONVERSATIONS = 2_000
TEXT = "A reasonably long message about travel plans and the weather in Lisbon. " * 6


async def fill(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    now = datetime.now(UTC)
    rng = random.Random(7)
    await conn.execute(
        "INSERT INTO llm_configs (user_id, provider, api_key_encrypted, api_key_hint, model)"
        " VALUES ($1, 'openai', 'v1.x.y', '***', 'gpt-4o-mini')", HEAVY)
    ids = await conn.fetch(
        "INSERT INTO llm_conversations (user_id, provider, model, created_at, updated_at,"
        " last_message_at, message_count) SELECT $1, 'openai', 'gpt-4o-mini',"
        " $2::timestamptz - i * interval '1 minute', $2, $2::timestamptz - i * interval"
        " '1 minute', 50 FROM generate_series(1, $3) i"
        " RETURNING id", HEAVY, now, CONVERSATIONS)
    conversation_ids = [r["id"] for r in ids]
    long_one = conversation_ids[0]
    parent = None
    for i in range(LONG_MESSAGES):  # one chain: every message follows the one before
        parent = await conn.fetchval(
            "INSERT INTO llm_chat_history (user_id, provider, role, content, tokens_used,"
            " created_at, conversation_id, parent_id) VALUES ($1, 'openai', $2, $3, 10, $4, $5,"
            " $6) RETURNING id", HEAVY, "user" if i % 2 == 0 else "assistant", TEXT,
            now - timedelta(seconds=LONG_MESSAGES - i), long_one, parent)
    await conn.execute("UPDATE llm_conversations SET active_leaf_id = $1, message_count = $2"
                       " WHERE id = $3", parent, LONG_MESSAGES, long_one)
    rows = []
    for i in range(100_000):  # the heavy user's other conversations
        rows.append((HEAVY, "openai", "user" if i % 2 == 0 else "assistant", f"m {i}", 5,
                     now - timedelta(seconds=rng.randint(0, 90 * 86400)),
                     conversation_ids[1 + i % (CONVERSATIONS - 1)]))
    for i in range(200_000):  # other users' default threads
        rows.append((rng.randint(2, 1000), "openai", "user" if i % 2 == 0 else "assistant",
                     f"d {i}", 5, now - timedelta(seconds=rng.randint(0, 90 * 86400)), None))
    await conn.copy_records_to_table("llm_chat_history", records=rows, columns=[
        "user_id", "provider", "role", "content", "tokens_used", "created_at",
        "conversation_id"])
    await conn.execute("ANALYZE")
    await conn.close()
    return int(long_one)


async def timed(label: str, action: Callable[[], Awaitable[object]]) -> None:
    await action()
    runs = []
    for _ in range(5):
        began = time.perf_counter()
        await action()
        runs.append((time.perf_counter() - began) * 1000)
    print(f"| {label} | {statistics.median(runs):.1f} ms |")


async def main(pg: str, explain: bool = False) -> None:
    name = f"bench_conv_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = pg.rsplit("/", 1)[0]
    dsn = f"{base}/{name}"
    try:
        settings = load_settings(DATABASE_URL=dsn, JWT_SECRET="x" * 40,
                                 ENCRYPTION_KEY="0" * 64, LLM_ENV="development")
        engine = create_engine(settings)
        await migrate.upgrade(engine)
        long_one = await fill(dsn)
        runtime: Any = SimpleNamespace(settings=settings, catalog=load_catalog(),
                                       providers={"openai": SimpleNamespace(
                                           display_name="OpenAI")})
        sessions = create_session_factory(engine)
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

        async def send_read(model: str | None) -> None:
            async with autocommit.connect() as conn:
                await conversations.plan(conn, runtime, HEAVY, long_one, provider=None,
                                         model=model, message="next")

        async def listing(cursor: str | None = None) -> str | None:
            async with sessions() as session:
                _, next_cursor = await conversations.listing(
                    session, HEAVY, provider=None, pinned=None, archived=False, limit=50,
                    cursor=cursor)
            return next_cursor

        async def tree() -> None:
            async with sessions() as session:
                await conversations.messages(session, HEAVY, long_one, "tree")

        async def default_history() -> None:
            async with sessions() as session:
                await history.page(session, HEAVY, "openai", limit=50, offset=0)

        print("| query | median |\n|---|---|")
        await timed("send read, 998-message branch, 128k window (all of it fits)",
                    lambda: send_read(None))
        await timed("send read, same branch, 16k window (unknown model: cut early)",
                    lambda: send_read("house-model"))
        await timed("list, first page of 50 (of 2,000)", listing)
        second = await listing()
        await timed("list, a cursor page", lambda: listing(second))
        await timed("messages, tree of 998", tree)
        await timed("default history page, user with 101,000 conversation messages",
                    default_history)
        if explain:
            conn = await asyncpg.connect(dsn)
            for query in (
                "SELECT count(*) FROM llm_chat_history WHERE user_id = 1 AND provider = 'openai'"
                " AND conversation_id IS NULL",
                "SELECT * FROM llm_chat_history WHERE user_id = 1 AND provider = 'openai' AND"
                " conversation_id IS NULL ORDER BY created_at DESC, id DESC LIMIT 50",
            ):
                print("\n".join(r[0] for r in await conn.fetch("EXPLAIN ANALYZE " + query)))
            await conn.close()
        await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--explain", action="store_true", help="print the default thread's plans")
    args = parser.parse_args()
    asyncio.run(main(args.pg, args.explain))
