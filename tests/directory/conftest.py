"""Fixtures and helpers of the directory tests: the directory app in-process on the real
PostgreSQL, and providers (organisations) of their own for each test, so tests never see each
other's services (searches filter by the test's own organisation codes)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings
from tests.conftest import auth

#: the synthetic area's postcodes used by the tests, with the table's coordinates
CENTRE_POSTCODE = "WY1 0BG"  # 53.709534, -1.931754 (Wayford Central)


@pytest.fixture(scope="session")
async def directory_client(infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The directory app in-process (real database), lifespan included."""
    from services.directory.api import app

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://directory") as c:
            yield c


@pytest.fixture(scope="session")
async def directory_sessions(infra: Settings) -> AsyncIterator[async_sessionmaker]:
    engine = make_engine(infra, "directory", pool_size=2)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def query(sessions: async_sessionmaker, sql: str, **params: Any) -> list[Any]:
    async with sessions() as session:
        result = await session.exec(text(sql).bindparams(**params))  # type: ignore[call-overload]
        return list(result.all())


def new_code(prefix: str = "PRV") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


@dataclass
class Provider:
    """A provider organisation of one test, with a member of its staff."""

    code: str
    ics: str
    headers: dict[str, str]
    user: str


async def new_provider(
    client: httpx.AsyncClient, s: Settings, *, ics: str = "ICS-1", name: str | None = None
) -> Provider:
    code, user = new_code(), f"staff-{uuid.uuid4().hex[:8]}"
    headers = auth(s, role="service_staff", org=code, ics=ics, sub=user)
    r = await client.put(
        f"/organizations/{code}",
        headers=headers,
        json={"name": name or f"Provider {code}", "description": "A synthetic provider for tests."},
    )
    assert r.status_code == 201, r.text
    return Provider(code=code, ics=ics, headers=headers, user=user)


def service_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"svc-{uuid.uuid4().hex[:12]}",
        "name": "Community physiotherapy",
        "description": "Assessment and exercise for joint problems.",
        "category": "msk_physiotherapy",
        "conditions": ["persistent_pain"],
        "delivery_modes": ["in_person"],
        "how_to_refer": "GP referral through Waymark.",
        "locations": [
            {
                "name": "Wayford Health Centre",
                "postcode": CENTRE_POSTCODE,
                "address_1": "1 Market Street",
                "city": "Wayford",
            }
        ],
    }
    body.update(overrides)
    return body


async def create(client: httpx.AsyncClient, p: Provider, **overrides: Any) -> dict[str, Any]:
    r = await client.post("/services", json=service_body(**overrides), headers=p.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def create_published(
    client: httpx.AsyncClient, p: Provider, **overrides: Any
) -> dict[str, Any]:
    created = await create(client, p, **overrides)
    r = await client.post(f"/services/{created['id']}/publish", headers=p.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def at(lat: float, lon: float, name: str = "venue") -> dict[str, Any]:
    return {"name": name, "latitude": lat, "longitude": lon}
