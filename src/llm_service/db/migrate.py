"""Run the Alembic migrations on an engine (used by `llm-service migrate` and by start-up)."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from llm_service.errors import is_database_outage, sqlstate_of

log = logging.getLogger("llm_service.db")

VERSION_TABLE = "llm_service_alembic_version"
# PostgreSQL's "the database system is starting up" (and shutting down, in recovery).
_NOT_ACCEPTING_YET = {"57P03"}
# A database that does not exist, a role or password refused.
_NEVER_BY_WAITING = {"3D000", "28000", "28P01"}


def script_location() -> Path:
    """`migrations/` bundled in the wheel, else the repository's own (editable install)."""
    bundled = Path(__file__).resolve().parent.parent / "migrations"
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parents[3] / "migrations"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("version_table", VERSION_TABLE)
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str | None:
    """The newest revision of the bundled migrations (read from disk once per process)."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    return ScriptDirectory.from_config(config).get_current_head()


def _not_up_yet(exc: BaseException) -> bool:
    """Refused, unresolvable, timed out or still starting: worth another try; a wrong password or
    a missing database is not (a request answers those 503, but at start-up waiting cannot make
    them right)."""
    state = sqlstate_of(exc)
    if state in _NOT_ACCEPTING_YET:
        return True
    if state in _NEVER_BY_WAITING:
        return False
    return is_database_outage(exc)


def _log_retry(state: RetryCallState, wait_s: float) -> None:
    exc = state.outcome.exception() if state.outcome else None
    # The exception's type only: its text may carry the connection URL or SQL.
    log.warning("database not reachable yet (%s); retrying for up to %g s in all",
                type(exc).__name__, wait_s)


async def wait_for_database(engine: AsyncEngine, wait_s: float) -> None:
    """Return once the database answers `SELECT 1`, retrying for at most `wait_s` seconds while
    it is not up yet (then the last error is raised)."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(wait_s),
        wait=wait_exponential(multiplier=0.25, max=2),
        retry=retry_if_exception(_not_up_yet),
        before_sleep=lambda state: _log_retry(state, wait_s),
        reraise=True,
    ):
        with attempt:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))


async def upgrade(engine: AsyncEngine, revision: str = "head", *, wait_s: float = 0) -> None:
    """Migrate to `revision`, first waiting up to `wait_s` seconds for the database to be up."""
    if wait_s > 0:
        await wait_for_database(engine, wait_s)
    async with engine.begin() as connection:
        await connection.run_sync(lambda conn: command.upgrade(_config(conn), revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(lambda conn: command.downgrade(_config(conn), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda conn: MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}
            ).get_current_revision()
        )
