"""Async Alembic environment.

`llm_service.db.migrate` passes an open connection in ``config.attributes["connection"]``; the plain
`alembic` command builds an engine from the service's settings instead. On PostgreSQL an advisory
lock serializes replicas that migrate at the same start.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from llm_service.db.models import Base

VERSION_TABLE = "llm_service_alembic_version"
# An arbitrary constant naming this service's migration lock.
ADVISORY_LOCK_ID = 0x6C6C6D2D737663


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        context.run_migrations()


async def _run_with_own_engine() -> None:
    from llm_service.db.session import create_engine
    from llm_service.settings import load_settings

    engine = create_engine(load_settings())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")

given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    asyncio.run(_run_with_own_engine())
