"""Property-based tests of the notifications API from its own OpenAPI document
(schemathesis): every operation but the endless live stream, valid and invalid requests, and
not one 5xx.

Requests go to the in-process app on the test session's loop (real database). Half the
generated subscription and alert ids are swapped for real ones the caller may act on, so
requests reach the handlers rather than stopping at 404."""

from __future__ import annotations

import asyncio
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from services.notifications.api import app
from services.notifications.effects import apply_event
from shared.db import unit_of_work
from shared.events.envelope import make_event
from shared.events.journeys import ALERT_EVENTS
from shared.events.registry import REGISTRY, load_all
from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import send_case

# the live stream never ends by design; it has its own tests (alerts/test_live.py)
schema = schemathesis.openapi.from_dict(app.openapi()).exclude(path="/alerts/stream")
FUZZ = {
    "max_examples": 25,
    "deadline": None,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}
ORG = "FUZZ-PARTNER"


@pytest.fixture(scope="module")
async def session_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.fixture(scope="module")
async def fuzz_client(notifications_client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The running app; an unhandled error comes back as the 500 a caller would see."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifications") as c:
        yield c


@pytest.fixture(scope="module")
async def fuzz_world(
    fuzz_client: httpx.AsyncClient, settings: Settings, notifications_sessions
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    headers = auth(
        settings,
        role=["coordinator", "partner", "service_staff"],
        org=ORG,
        ics=settings.ics,
        sub="fuzz-user",
    )
    resp = await fuzz_client.post(
        "/webhook-subscriptions",
        headers=headers,
        json={"url": "http://127.0.0.1:9/fuzz", "event_types": ["uk.waymark.referral.submitted"]},
    )
    assert resp.status_code == 201, resp.text
    load_all()
    alert_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    event = make_event(
        ALERT_EVENTS["raised"](
            alert_id=alert_id,
            kind="stalled",
            rule="not_triaged",
            severity="high",
            status="open",
            referral_ids=["ref-fuzz"],
            seq=1,
        ),
        subject=f"pt-{uuid.uuid4().hex}",
    )
    async with unit_of_work(notifications_sessions) as session:
        await apply_event(
            session=session, event=event, data=REGISTRY.parse(event), settings=settings
        )
    return {"headers": headers, "subscription_id": resp.json()["id"], "alert_id": alert_id}


def _steer(case: Any, world: dict[str, Any]) -> None:
    pick = zlib.crc32(repr((case.method, case.path_parameters, case.query, case.body)).encode())
    params = case.path_parameters or {}
    if pick % 2:
        for name in ("subscription_id", "alert_id"):
            if name in params:
                params[name] = world[name]


@schema.parametrize()
@hypothesis_settings(**FUZZ)
def test_no_5xx(
    case: Any,
    fuzz_world: dict[str, Any],
    session_loop: asyncio.AbstractEventLoop,
    fuzz_client: httpx.AsyncClient,
) -> None:
    headers = fuzz_world["headers"]
    _steer(case, fuzz_world)
    response = send_case(case, headers, session_loop, fuzz_client)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    case.validate_response(response, checks=[not_a_server_error], headers=headers)
