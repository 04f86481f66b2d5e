"""Fixtures of the notifications tests. Helpers add their own fixtures in their own test
modules; shared ones live here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings
from tests.notifications.webhook_support import receiver  # noqa: F401 - a fixture


@pytest.fixture(scope="session")
async def notifications_sessions(infra: Settings):  # type: ignore[no-untyped-def]
    """Sessions on the notifications schema of the test database (real PostgreSQL)."""
    engine = make_engine(infra, "notifications")
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def notifications_client(infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The notifications app in-process (real database), lifespan included."""
    from services.notifications.api import app

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notifications") as c:
            yield c
