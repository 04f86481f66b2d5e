"""Fixtures of the care plans tests: the app in-process on the real database, a session maker
for reading what requests wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings


@pytest.fixture(scope="session")
async def care_plans_sessions(infra: Settings) -> AsyncIterator[async_sessionmaker]:
    engine = make_engine(infra, "care_plans")
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def care_plans_client(infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The care plans app in-process (real database), lifespan included."""
    from services.care_plans.api import app

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://care-plans") as c:
            yield c
