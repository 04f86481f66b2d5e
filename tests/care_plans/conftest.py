"""Fixtures of the care plans tests: a session maker for reading what requests wrote (the app
in-process is tests/conftest.py's care_plans_client)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings


@pytest.fixture(scope="session")
async def care_plans_sessions(infra: Settings) -> AsyncIterator[async_sessionmaker]:
    engine = make_engine(infra, "care_plans")
    yield make_sessionmaker(engine)
    await engine.dispose()
