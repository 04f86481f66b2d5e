"""Fixtures of the dashboard's tests: the in-process app and a browser-like client (the
page and session tests), the browser tests' (in browser_support.py), and the accessibility
summary at the end of the run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.notifications.api import app
from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings
from tests.dashboard.browser_support import (  # noqa: F401 - fixtures
    AXE_RESULTS,
    admin,
    axe_summary_lines,
    browser,
    coordinator,
    dashboard,
    fast_triage_service,
    page,
    service_staff,
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not AXE_RESULTS:
        return
    terminalreporter.section("axe-core: violations by impact (WCAG 2.x A/AA, 2.2 AA)")
    for line in axe_summary_lines():
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
async def dashboard_app(infra: Settings) -> AsyncIterator[Any]:
    """The notifications app in-process (real database), its lifespan entered once; reused
    as it is when another suite's fixture has already entered it."""
    if getattr(app.state, "sessions", None) is not None:
        yield app
        return
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def sessions(infra: Settings) -> AsyncIterator[Any]:
    """Sessions on the notifications schema of the test database."""
    engine = make_engine(infra, "notifications")
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def web(dashboard_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of the in-process app with a cookie jar of its own."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dashboard_app), base_url="http://dashboard.test"
    ) as c:
        yield c
