"""Fixtures of the security suite: every service's app in-process on the real database (the
per-service fixtures, reused), a session maker per service schema, and one `Apis` bundle so a
test can walk all five."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker

from tests.care_plans.conftest import care_plans_sessions  # noqa: F401
from tests.directory.conftest import directory_client, directory_sessions  # noqa: F401
from tests.integration.conftest import integration_client, integration_sessions  # noqa: F401
from tests.notifications.conftest import (  # noqa: F401
    notifications_client,
    notifications_sessions,
)


@dataclass(frozen=True)
class Api:
    name: str
    app: FastAPI
    client: httpx.AsyncClient


@pytest.fixture(scope="session")
def apis(
    referrals_client: httpx.AsyncClient,
    directory_client: httpx.AsyncClient,  # noqa: F811
    care_plans_client: httpx.AsyncClient,
    notifications_client: httpx.AsyncClient,  # noqa: F811
    integration_client: httpx.AsyncClient,  # noqa: F811
) -> dict[str, Api]:
    """The five services' apps and in-process clients, by service name."""
    from services.care_plans.api import app as care_plans
    from services.directory.api import app as directory
    from services.integration.api import app as integration
    from services.notifications.api import app as notifications
    from services.referrals.api import app as referrals

    return {
        "referrals": Api("referrals", referrals, referrals_client),
        "directory": Api("directory", directory, directory_client),
        "care_plans": Api("care_plans", care_plans, care_plans_client),
        "notifications": Api("notifications", notifications, notifications_client),
        "integration": Api("integration", integration, integration_client),
    }


@pytest.fixture(scope="session")
def schema_sessions(
    referrals_sessions: async_sessionmaker,
    directory_sessions: async_sessionmaker,  # noqa: F811
    care_plans_sessions: async_sessionmaker,  # noqa: F811
    notifications_sessions: async_sessionmaker,  # noqa: F811
    integration_sessions: async_sessionmaker,  # noqa: F811
    journey_sessions: async_sessionmaker,
) -> dict[str, async_sessionmaker]:
    """A session maker on each service's own schema (the search path is the schema)."""
    return {
        "referrals": referrals_sessions,
        "directory": directory_sessions,
        "care_plans": care_plans_sessions,
        "notifications": notifications_sessions,
        "journeys": journey_sessions,
        "integration": integration_sessions,
    }
