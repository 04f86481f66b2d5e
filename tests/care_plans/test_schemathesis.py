"""Property-based tests of the care plans API from its own OpenAPI document (schemathesis):
every operation, valid and invalid requests, and not one 5xx.

Requests go to the in-process app on the test session's loop (real database). Half the
generated plan ids are swapped for a real plan the caller holds (with its current ETag), and
half the generated NHS numbers for valid synthetic ones, so requests reach the handlers."""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from services.care_plans.api import app
from shared.settings import Settings
from tests.care_plans.support import World, create_plan
from tests.helpers import send_case, synthetic_nhs_number

schema = schemathesis.openapi.from_dict(app.openapi())
FUZZ = {
    "max_examples": 25,
    "deadline": None,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}


@pytest.fixture(scope="module")
async def session_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.fixture(scope="module")
async def fuzz_client(care_plans_client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The running app; an unhandled error comes back as the 500 a caller would see."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://care-plans") as c:
        yield c


@pytest.fixture(scope="module")
async def fuzz_world(care_plans_client: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    w = World(settings)
    plan = await create_plan(care_plans_client, w)
    return {"world": w, "plan": plan, "headers": w.holder_h()}


def _steer(
    case: Any, world: dict[str, Any], loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient
) -> None:
    pick = zlib.crc32(repr((case.method, case.path_parameters, case.query, case.body)).encode())
    params = case.path_parameters or {}
    if pick % 2 and "plan_id" in params:
        params["plan_id"] = world["plan"]["id"]
        if case.method.upper() == "PUT":
            read = loop.run_until_complete(
                client.get(f"/care-plans/{world['plan']['id']}", headers=world["headers"])
            )
            case.headers = {**(case.headers or {}), "If-Match": read.headers["etag"]}
    if pick % 2 and "patient_id" in params:
        params["patient_id"] = world["plan"]["patient_id"]
    if case.path == "/care-plans" and isinstance(case.body, dict) and pick % 2:
        case.body["nhs_number"] = synthetic_nhs_number(random.Random(pick))


@schema.parametrize()
@hypothesis_settings(**FUZZ)
def test_no_5xx(
    case: Any,
    fuzz_world: dict[str, Any],
    session_loop: asyncio.AbstractEventLoop,
    fuzz_client: httpx.AsyncClient,
) -> None:
    headers = fuzz_world["headers"]
    _steer(case, fuzz_world, session_loop, fuzz_client)
    response = send_case(case, headers, session_loop, fuzz_client)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    case.validate_response(response, checks=[not_a_server_error], headers=headers)
