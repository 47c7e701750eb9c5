"""Alembic builds the schema on both databases, up and down, and links to the auth service's
users table when one exists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from llm_service.db import migrate
from llm_service.db.session import create_engine
from tests.conftest import BACKENDS, drop_pg_database, fresh_database_url, make_settings

USERS_TABLE = """
CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    email VARCHAR(255) NOT NULL UNIQUE,
    role VARCHAR(20) NOT NULL DEFAULT 'CLIENT'
)
"""


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = await fresh_database_url(request.param, tmp_path)
    engine = create_engine(make_settings(tmp_path, url))
    yield engine
    await engine.dispose()
    if request.param == "postgres":
        await drop_pg_database(url)


async def schema(engine: AsyncEngine) -> dict[str, object]:
    def read(conn):  # type: ignore[no-untyped-def]
        inspector = inspect(conn)
        tables = {}
        for table in ("llm_configs", "llm_chat_history"):
            if not inspector.has_table(table):
                continue
            tables[table] = {
                "columns": {c["name"] for c in inspector.get_columns(table)},
                "foreign_keys": [
                    (fk["referred_table"], fk["options"].get("ondelete"))
                    for fk in inspector.get_foreign_keys(table)
                ],
                "indexes": {i["name"] for i in inspector.get_indexes(table)},
                "unique": [
                    tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
                ],
            }
        return tables

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def test_upgrade_builds_the_plans_tables(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    tables = await schema(engine)
    assert tables["llm_configs"]["columns"] >= {  # type: ignore[index]
        "id", "user_id", "provider", "api_key_encrypted", "model", "temperature", "max_tokens",
        "created_at", "updated_at",
    }
    assert tables["llm_configs"]["unique"] == [("user_id", "provider")]  # type: ignore[index]
    assert tables["llm_chat_history"]["columns"] >= {  # type: ignore[index]
        "id", "user_id", "provider", "role", "content", "tokens_used", "created_at",
    }
    assert "ix_llm_chat_history_user_provider_created" in tables[  # type: ignore[operator]
        "llm_chat_history"]["indexes"]
    assert tables["llm_configs"]["foreign_keys"] == []  # type: ignore[index]
    assert await migrate.current_revision(engine) == "0007"


async def test_downgrade_removes_everything_and_upgrade_again_works(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    await migrate.downgrade(engine, "base")
    assert await schema(engine) == {}
    assert await migrate.current_revision(engine) is None
    await migrate.upgrade(engine)
    assert set(await schema(engine)) == {"llm_configs", "llm_chat_history"}


async def test_upgrade_twice_is_a_no_op(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) == "0007"


async def test_defaults_of_the_plan_hold_in_the_database(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO llm_configs (user_id, provider, api_key_encrypted, api_key_hint, model)"
            " VALUES (1, 'openai', 'v1.x.y', '***', 'gpt-4o')"
        ))
        row = (await conn.execute(text(
            "SELECT temperature, max_tokens FROM llm_configs"
        ))).one()
    assert (float(row[0]), row[1]) == (0.7, 2048)


async def test_with_a_users_table_rows_go_when_their_user_is_deleted(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(USERS_TABLE))
        await conn.execute(text("INSERT INTO users (id, email) VALUES (1, 'a@x'), (2, 'b@x')"))
    await migrate.upgrade(engine)
    tables = await schema(engine)
    assert tables["llm_configs"]["foreign_keys"] == [("users", "CASCADE")]  # type: ignore[index]
    assert sorted(tables["llm_chat_history"]["foreign_keys"]) == [  # type: ignore[index]
        ("llm_conversations", "CASCADE"), ("users", "CASCADE")]
    async with engine.begin() as conn:
        for user in (1, 2):
            await conn.execute(text(
                "INSERT INTO llm_configs (user_id, provider, api_key_encrypted, api_key_hint,"
                f" model) VALUES ({user}, 'openai', 'v1.x.y', '***', 'gpt-4o')"
            ))
            await conn.execute(text(
                "INSERT INTO llm_chat_history (user_id, provider, role, content)"
                f" VALUES ({user}, 'openai', 'user', 'hi')"
            ))
        await conn.execute(text("DELETE FROM users WHERE id = 1"))
    async with engine.connect() as conn:
        configs = (await conn.execute(text("SELECT user_id FROM llm_configs"))).scalars().all()
        messages = (await conn.execute(text("SELECT user_id FROM llm_chat_history"))).scalars()
        assert (list(configs), list(messages)) == ([2], [2])


async def test_with_a_users_table_rows_of_unknown_users_are_refused(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(USERS_TABLE))
    await migrate.upgrade(engine)
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO llm_chat_history (user_id, provider, role, content)"
                " VALUES (99, 'openai', 'user', 'hi')"
            ))


async def test_with_a_users_table_conversations_and_their_messages_go_with_their_user(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(USERS_TABLE))
        await conn.execute(text("INSERT INTO users (id, email) VALUES (1, 'a@x'), (2, 'b@x')"))
    await migrate.upgrade(engine)
    async with engine.begin() as conn:
        for user in (1, 2):
            conversation = (await conn.execute(text(
                "INSERT INTO llm_conversations (user_id, provider, model)"
                f" VALUES ({user}, 'openai', 'gpt-4o') RETURNING id"
            ))).scalar_one()
            await conn.execute(text(
                "INSERT INTO llm_chat_history (user_id, provider, role, content, conversation_id)"
                f" VALUES ({user}, 'openai', 'user', 'hi', {conversation})"
            ))
        await conn.execute(text("DELETE FROM users WHERE id = 1"))
    async with engine.connect() as conn:
        conversations = (await conn.execute(text("SELECT user_id FROM llm_conversations")))
        messages = (await conn.execute(text("SELECT user_id FROM llm_chat_history")))
        assert (list(conversations.scalars()), list(messages.scalars())) == ([2], [2])


async def test_deleting_a_conversation_deletes_its_messages_and_only_them(
    engine: AsyncEngine,
) -> None:
    await migrate.upgrade(engine)
    async with engine.begin() as conn:
        ids = [(await conn.execute(text(
            "INSERT INTO llm_conversations (user_id, provider, model)"
            " VALUES (1, 'openai', 'gpt-4o') RETURNING id"))).scalar_one() for _ in range(2)]
        for conversation in (*ids, "NULL"):
            await conn.execute(text(
                "INSERT INTO llm_chat_history (user_id, provider, role, content, conversation_id)"
                f" VALUES (1, 'openai', 'user', 'in {conversation}', {conversation})"))
        await conn.execute(text(f"DELETE FROM llm_conversations WHERE id = {ids[0]}"))
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT content FROM llm_chat_history ORDER BY id")))
        assert list(left.scalars()) == [f"in {ids[1]}", "in NULL"]
