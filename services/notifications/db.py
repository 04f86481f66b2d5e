"""The notifications service's one database helper: a raw SQL statement with bound parameters,
run in the caller's session (so in the caller's transaction; only the unit of work commits).

Every repository of notifications (alerts, messages, webhooks, the referral index) runs its
SQL through it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession


async def execute(session: AsyncSession, sql: str, **params: Any) -> Any:
    """Run `sql` with `params` bound (`:name`); the result as SQLAlchemy gives it."""
    return await session.exec(text(sql).bindparams(**params))  # type: ignore[call-overload]
