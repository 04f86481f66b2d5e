"""Async engines and sessions. Each service owns one Postgres schema; its engine's
`search_path` is that schema, so the same table definitions (outbox, inbox, audit) live once
per service. Its engine connects as the part's own runtime role (waymark_<schema>), which the
database lets read and write that schema only, and only append to its audit log
(shared/migrations.py grants), so no service can read another's tables even on purpose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.settings import SERVICE_SCHEMAS, Settings


def make_engine(settings: Settings, schema: str, *, pool_size: int | None = None) -> AsyncEngine:
    if schema not in SERVICE_SCHEMAS:
        raise ValueError(f"unknown schema {schema!r}; one of {SERVICE_SCHEMAS}")
    return create_async_engine(
        settings.part_database_url(schema),
        pool_size=pool_size or settings.db_pool_size,
        pool_pre_ping=True,
        connect_args={
            "server_settings": {"search_path": schema, "application_name": f"waymark-{schema}"}
        },
    )


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
