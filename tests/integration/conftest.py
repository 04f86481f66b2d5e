"""Fixtures of the integration service's tests: its app in-process on the real database, a
session maker on its schema, and registered source systems of their own per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.integration.models import SourceSystem
from shared.db import make_engine, make_sessionmaker, unit_of_work
from shared.settings import Settings

NewSource = Callable[..., Awaitable[SourceSystem]]


@pytest.fixture(scope="session")
async def integration_client(infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from services.integration.api import app

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://integration") as c:
            yield c


@pytest.fixture(scope="session")
async def integration_sessions(infra: Settings) -> AsyncIterator[async_sessionmaker]:
    engine = make_engine(infra, "integration", pool_size=3)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def new_source(integration_sessions: async_sessionmaker) -> NewSource:
    """Register a source system with ids of its own (tests never share a source)."""

    async def make(
        channel: str = "hl7v2", org_code: str = "RX1", active: bool = True
    ) -> SourceSystem:
        tag = uuid.uuid4().hex[:10]
        row = SourceSystem(
            id=f"src-{tag}",
            name=f"Test source {tag}",
            org_code=org_code,
            channel=channel,
            sending_facility=f"FAC{tag}".upper() if channel == "hl7v2" else None,
            client_id=f"client-{tag}" if channel == "fhir" else None,
            active=active,
        )
        async with unit_of_work(integration_sessions) as session:
            session.add(row)
        return row

    return make
