"""The `llm-service` command: token, gen-key, migrate, rotate-keys (run as a real process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from llm_service.db import migrate
from llm_service.db.models import LLMConfig
from llm_service.db.session import create_engine, create_session_factory
from llm_service.schemas import ConfigIn
from llm_service.security.crypto import Keyring, generate_key_hex
from llm_service.security.jwt import Principal, TokenDecoder
from llm_service.services.configs import save_config
from tests.conftest import (
    BACKENDS,
    TEST_JWT_SECRET,
    drop_pg_database,
    fresh_database_url,
    make_settings,
)

OLD, NEW, LOST = generate_key_hex(), generate_key_hex(), generate_key_hex()


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LLM_ENV": "development", "LLM_DATA_DIR": str(tmp_path),
                   "JWT_SECRET": TEST_JWT_SECRET, "ENCRYPTION_KEY": NEW, **env}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from llm_service.cli import main; sys.exit(main())",
         *args],
        env=environment, capture_output=True, text=True, timeout=60, check=False,
    )


def test_token_prints_a_jwt_the_service_accepts(tmp_path: Path) -> None:
    result = run(tmp_path, "token", "--user-id", "42", "--role", "staff")
    assert result.returncode == 0, result.stderr
    settings = make_settings(tmp_path, "sqlite+aiosqlite://")
    assert TokenDecoder(settings).decode(result.stdout.strip()) == Principal(42, "STAFF")


def test_token_refuses_a_non_positive_user_id(tmp_path: Path) -> None:
    result = run(tmp_path, "token", "--user-id", "0")
    assert result.returncode == 2
    assert "--user-id must be a positive integer" in result.stderr


def test_gen_key_prints_a_fresh_64_hex_key(tmp_path: Path) -> None:
    first, second = run(tmp_path, "gen-key"), run(tmp_path, "gen-key")
    assert re.fullmatch(r"[0-9a-f]{64}\n", first.stdout)
    assert first.stdout != second.stdout


def test_production_without_secrets_refuses_with_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", LLM_ENV="production", JWT_SECRET="short",
                 DATABASE_URL="postgresql://x@127.0.0.1:1/x")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "llm-service: configuration error: JWT_SECRET is 5 bytes: production needs at least 32"
    ]


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    url = await fresh_database_url(request.param, tmp_path)
    yield url
    if request.param == "postgres":
        await drop_pg_database(url)


async def store_key(tmp_path: Path, url: str, key_hex: str, user_id: int, api_key: str) -> None:
    settings = make_settings(tmp_path, url, ENCRYPTION_KEY=key_hex)
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            await save_config(session, Keyring.from_hex(key_hex), settings, user_id=user_id,
                              provider="openai", given=ConfigIn.model_validate({"apiKey": api_key}))
    finally:
        await engine.dispose()


async def stored(tmp_path: Path, url: str) -> dict[int, str]:
    engine = create_engine(make_settings(tmp_path, url))
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.scalars(select(LLMConfig))
            return {row.user_id: row.api_key_encrypted for row in rows}
    finally:
        await engine.dispose()


async def test_migrate_then_rotate_keys_moves_every_row_to_the_current_key(
    tmp_path: Path, database: str
) -> None:
    migrated = run(tmp_path, "migrate", DATABASE_URL=database)
    assert migrated.returncode == 0, migrated.stderr
    assert f"database at revision {migrate.head_revision()}" in migrated.stdout
    await store_key(tmp_path, database, OLD, 1, "sk-written-under-old-key")
    await store_key(tmp_path, database, NEW, 2, "sk-written-under-new-key")

    rotated = run(tmp_path, "rotate-keys", DATABASE_URL=database, ENCRYPTION_KEYS_PREVIOUS=OLD)
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 1 key(s) under the current key; 1 already current" in rotated.stdout

    only_new = Keyring.from_hex(NEW)  # the old key is gone from the keyring
    values = await stored(tmp_path, database)
    assert only_new.decrypt(values[1], user_id=1, provider="openai") == "sk-written-under-old-key"
    assert only_new.decrypt(values[2], user_id=2, provider="openai") == "sk-written-under-new-key"


async def test_rotate_keys_with_an_unreadable_row_changes_nothing(
    tmp_path: Path, database: str
) -> None:
    assert run(tmp_path, "migrate", DATABASE_URL=database).returncode == 0
    await store_key(tmp_path, database, OLD, 1, "sk-written-under-old-key")
    await store_key(tmp_path, database, LOST, 2, "sk-written-under-lost-key")
    before = await stored(tmp_path, database)

    rotated = run(tmp_path, "rotate-keys", DATABASE_URL=database, ENCRYPTION_KEYS_PREVIOUS=OLD)
    assert rotated.returncode == 1
    assert "nothing changed" in rotated.stderr and "does not decrypt" in rotated.stderr
    assert "sk-written" not in rotated.stderr + rotated.stdout
    assert await stored(tmp_path, database) == before


async def test_rotate_keys_refuses_a_row_swapped_to_another_user(
    tmp_path: Path, database: str
) -> None:
    assert run(tmp_path, "migrate", DATABASE_URL=database).returncode == 0
    await store_key(tmp_path, database, OLD, 1, "sk-written-under-old-key")
    await store_key(tmp_path, database, OLD, 2, "sk-second-user-old-key")
    values = await stored(tmp_path, database)
    engine = create_engine(make_settings(tmp_path, database))
    async with engine.begin() as conn:
        await conn.execute(
            update(LLMConfig).where(LLMConfig.user_id == 2).values(api_key_encrypted=values[1])
        )
    await engine.dispose()
    rotated = run(tmp_path, "rotate-keys", DATABASE_URL=database, ENCRYPTION_KEYS_PREVIOUS=OLD)
    assert rotated.returncode == 1


async def test_prune_history_deletes_only_old_messages(tmp_path: Path, database: str) -> None:
    from datetime import timedelta

    from sqlalchemy import text

    from llm_service.db.models import utcnow
    from llm_service.services import history
    from llm_service.services.history import NewMessage

    assert run(tmp_path, "migrate", DATABASE_URL=database).returncode == 0
    engine = create_engine(make_settings(tmp_path, database))
    async with engine.begin() as conn:
        await history.store_messages(conn, 1, "openai", [NewMessage("user", "old", 1)])
        await conn.execute(text("UPDATE llm_chat_history SET created_at = :t"),
                           {"t": utcnow() - timedelta(days=31)})
        await history.store_messages(conn, 1, "openai", [NewMessage("user", "new", 1)])
    pruned = run(tmp_path, "prune-history", "--days", "30", DATABASE_URL=database)
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT content FROM llm_chat_history"))).scalars().all()
    await engine.dispose()
    assert pruned.returncode == 0, pruned.stderr
    assert "deleted 1 message(s) older than 30 day(s)" in pruned.stdout
    assert list(left) == ["new"]

