"""Async engines and sessions. Each service owns one Postgres schema; its engine's
`search_path` is that schema, so the same table definitions (outbox, inbox, audit) live once
per service. Its engine connects as the part's own runtime role (waymark_<schema>), which the
database lets read and write that schema only, and only append to its audit log
(shared/migrations.py grants), so no service can read another's tables even on purpose."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import Column, Insert, Integer, Table, bindparam, event, insert
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.settings import SERVICE_SCHEMAS, Settings

#: hosts whose traffic never leaves the machine: TLS there protects nothing and costs a
#: handshake attempt per connection (asyncpg's default sslmode "prefer" asks first)
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


#: SQLAlchemy's own default max_overflow
_SQLALCHEMY_OVERFLOW = 10

#: session settings of a service's connections beyond search_path. The integration service
#: writes and reads a batch of messages in one statement of column arrays each
#: (services/integration/repository.py). Under the default plan_cache_mode PostgreSQL planned
#: those statements again on every execution (~1 ms each: their custom plans always looked
#: cheaper than the generic one), while the generic plan is index lookups for any batch
#: (EXPLAIN in bench/RESULTS.md, issue #17). Forced generic: the listener's backend 0.37 ->
#: 0.25 ms of CPU a message; with the batch's 4 round trips, 0.23-0.25 -> 0.28 of the raw MLLP
#: echo at 8 connections. Plans are still made again when a table's statistics change.
_SESSION_SETTINGS: dict[str, dict[str, str]] = {
    "integration": {"plan_cache_mode": "force_generic_plan"},
}


def make_engine(settings: Settings, schema: str, *, pool_size: int | None = None) -> AsyncEngine:
    if schema not in SERVICE_SCHEMAS:
        raise ValueError(f"unknown schema {schema!r}; one of {SERVICE_SCHEMAS}")
    connect_args: dict[str, Any] = {
        "server_settings": {
            "search_path": schema,
            "application_name": f"waymark-{schema}",
            **_SESSION_SETTINGS.get(schema, {}),
        }
    }
    if settings.pg_host in _LOOPBACK or settings.pg_host.startswith("/"):
        connect_args["ssl"] = False
    engine = create_async_engine(
        settings.part_database_url(schema),
        pool_size=pool_size or settings.db_pool_size,
        # a process that sizes its own pool (a relay, a consumer, the worker) keeps
        # SQLAlchemy's overflow as before; the APIs' engines take the setting
        max_overflow=settings.db_pool_max_overflow if pool_size is None else _SQLALCHEMY_OVERFLOW,
        connect_args=connect_args,
    )
    _ping_after_idle(engine, settings.db_pool_ping_after_idle_seconds)
    return engine


def _ping_after_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection at checkout only when it has been idle `idle_seconds` (SQLAlchemy's
    pool_pre_ping pings on every checkout); a dead one is replaced (DisconnectionError makes the
    pool connect again)."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return  # new, or used moments ago
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError(f"a pooled connection was dead: {exc}") from exc


def connect_kwargs(settings: Settings, part: str, *, database: str | None = None) -> dict[str, Any]:
    """asyncpg.connect() arguments for `part`'s role (a schema, or "owner" for migrations)."""
    user, password = settings.pg_credentials(part)
    return {
        "host": settings.pg_host,
        "port": settings.pg_port,
        "user": user,
        "password": password,
        "database": database or settings.db_name,
    }


async def connect(
    settings: Settings, part: str, *, database: str | None = None, **kw: Any
) -> asyncpg.Connection:
    """A plain asyncpg connection as `part`'s role (LISTEN, inspection tools)."""
    return await asyncpg.connect(**connect_kwargs(settings, part, database=database), **kw)


def insert_rows(rows: Sequence[SQLModel]) -> tuple[Insert, dict[str, Any]]:
    """One INSERT statement that writes `rows` (table models, of any tables, in order), and its
    parameters: every row but the last in a data-modifying CTE. One round trip instead of the
    ORM's one per table; a row may reference one before it (PostgreSQL checks foreign keys when
    the statement ends). A column left None that the database fills (an identity, a default)
    is left to it. Statements are built once per shape (tables and columns) and reused, so
    SQLAlchemy neither rebuilds nor re-keys them per request."""
    shape = []
    params: dict[str, Any] = {}
    for i, row in enumerate(rows):
        values = _column_values(row)
        shape.append((row.__table__, tuple(values)))  # type: ignore[attr-defined]
        params.update({f"r{i}_{k}": v for k, v in values.items()})
    return _insert_statement(tuple(shape)), params


@lru_cache(maxsize=64)
def _insert_statement(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Insert:
    statements = [
        insert(table).values({k: bindparam(f"r{i}_{k}", type_=table.c[k].type) for k in keys})
        for i, (table, keys) in enumerate(shape)
    ]
    *ctes, last = statements
    return last.add_cte(*(stmt.cte(f"row_{i}") for i, stmt in enumerate(ctes)))


def _column_values(row: SQLModel) -> dict[str, Any]:
    table = row.__table__  # type: ignore[attr-defined]
    return {
        column.key: getattr(row, column.key)
        for column in table.columns
        if getattr(row, column.key) is not None or not _database_fills(column)
    }


def _database_fills(column: Column[Any]) -> bool:
    serial = (
        column.primary_key
        and column.autoincrement in (True, "auto")
        and isinstance(column.type, Integer)
    )
    return column.server_default is not None or column.identity is not None or serial


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commits when the block succeeds, rolls back when it raises.

    Only the unit of work commits; handlers and repositories never call commit().
    """
    async with sessions() as session:
        async with session.begin():
            yield session
