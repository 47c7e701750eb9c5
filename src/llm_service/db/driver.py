"""The chat path's statements, run on PostgreSQL's driver below SQLAlchemy's pool.

A chat runs three statements at most (its configuration, its stored context, the insert of
both rows), on an autocommit connection from SQLAlchemy's pool. Through `AsyncConnection.execute`
each costs SQLAlchemy's per-execution work on top of asyncpg's: the execution context, parameter
and result processing, the `insertmanyvalues` batching of a multi-row insert, the greenlet hop.
Measured with uvloop against PostgreSQL 15 on the loopback (3,000 runs each, CPU per run): the
configuration read 0.44 ms through SQLAlchemy and 0.32 ms on the driver; the two-row insert with
`RETURNING` 0.9 ms and 0.3 ms (`bench/README.md`, "Where a chat's time goes").

So `DriverQuery` keeps the statement a SQLAlchemy Core construct (one definition of its SQL, the
models' names), compiles it once for the connection's dialect, and on PostgreSQL with asyncpg
runs the compiled text on the asyncpg connection under the pooled SQLAlchemy connection: asyncpg
prepares it once per connection and keeps it in its statement cache, so each later run is one
Bind/Execute round trip. On any other dialect (the SQLite default) the statement runs through
SQLAlchemy as before. Rows come back as tuples in the statement's column order on both.

A driver-level failure is reported the way SQLAlchemy would: when the connection is gone the
pooled connection is invalidated (so the pool never hands it out again) and the failure is
raised as `DriverConnectionLost`, an `OSError`, which `errors.is_database_outage` counts as an
outage like SQLAlchemy's own disconnect errors; any other error (a statement PostgreSQL
refuses) comes through as asyncpg raised it, its SQLSTATE readable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Table, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

# asyncpg's errors that always mean the connection is gone (not that the statement was wrong);
# its InterfaceError ("connection is closed", but also misuse) counts when the connection is.
CONNECTION_LOST = (asyncpg.PostgresConnectionError, OSError)


class DriverConnectionLost(ConnectionError):
    """The database connection was lost under a statement run on the driver."""


def _on_asyncpg(dialect: Dialect) -> bool:
    return dialect.name == "postgresql" and dialect.driver == "asyncpg"


class DriverQuery:
    """A Core statement run on the driver where that is asyncpg, else through SQLAlchemy."""

    __slots__ = ("_compiled", "_statement")

    def __init__(self, statement: Executable) -> None:
        self._statement = statement
        self._compiled: tuple[str, tuple[str, ...]] | None = None

    def _compile(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        if self._compiled is None:
            compiled = self._statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            self._compiled = (str(compiled), tuple(compiled.positiontup or ()))
        return self._compiled

    async def rows(self, conn: AsyncConnection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of the statement with these parameters, as tuples."""
        if not _on_asyncpg(conn.dialect):
            result = await conn.execute(self._statement, dict(params))
            return [tuple(row) for row in result]
        sql, names = self._compile(conn.dialect)
        raw = await conn.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
        try:
            records = await driver.fetch(sql, *(params[name] for name in names))
        except Exception as exc:
            if isinstance(exc, CONNECTION_LOST) or driver.is_closed():
                await conn.invalidate()
                raise DriverConnectionLost(type(exc).__name__) from exc
            raise
        return [tuple(record) for record in records]


class DriverInsert:
    """`INSERT` of several rows into `table` in one statement, returning their ids in the order
    of the rows: on asyncpg one multi-row `VALUES` (ids come from the table's sequence, so
    sorting them gives the rows' order), else SQLAlchemy's `insertmanyvalues` with
    `sort_by_parameter_order`."""

    __slots__ = ("_fallback", "_queries", "_table")

    def __init__(self, table: Table) -> None:
        self._table = table
        self._fallback = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        self._queries: dict[tuple[int, tuple[str, ...]], DriverQuery] = {}

    def _query(self, count: int, columns: tuple[str, ...]) -> DriverQuery:
        key = (count, columns)
        query = self._queries.get(key)
        if query is None:
            table = self._table
            values = [
                {name: bindparam(f"{name}_{index}", type_=table.c[name].type)
                 for name in columns}
                for index in range(count)
            ]
            query = DriverQuery(insert(table).values(values).returning(table.c.id))
            self._queries[key] = query
        return query

    async def ids(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        if not rows:
            return []
        if not _on_asyncpg(conn.dialect):
            result = await conn.execute(self._fallback, [dict(row) for row in rows])
            return [int(value) for value in result.scalars()]
        columns = tuple(rows[0])
        params = {f"{name}_{index}": row[name]
                  for index, row in enumerate(rows) for name in columns}
        found = await self._query(len(rows), columns).rows(conn, params)
        return sorted(int(row[0]) for row in found)
