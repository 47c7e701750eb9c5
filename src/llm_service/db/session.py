"""The async engine and session factory, made once in the app's lifespan, and the one
dialect-aware INSERT (with its upsert clauses) that services build statements from."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from llm_service.settings import Settings


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": settings.db_timeout_s}, hide_parameters=True
        )
        event.listen(engine.sync_engine, "connect", _enable_sqlite_foreign_keys)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_timeout_s,
        pool_pre_ping=False,
        hide_parameters=True,
        connect_args={"timeout": settings.db_timeout_s, "command_timeout": 30},
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def dialect_insert(bind: AsyncConnection | AsyncSession, table: Any) -> Any:
    """`INSERT` in the dialect of `bind`, whose `on_conflict_do_update`/`on_conflict_do_nothing`
    both databases speak (PostgreSQL and SQLite 3.24+ share `ON CONFLICT`)."""
    engine = bind.bind if isinstance(bind, AsyncSession) else bind
    name = engine.dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(table)
