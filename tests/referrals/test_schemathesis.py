"""Property-based tests of the referrals API from its own OpenAPI document (schemathesis): every
operation, valid and invalid requests, as a clinician and as service staff, and not one 5xx.

The requests go to the in-process app the `referrals_client` fixture started (real database),
on the test session's event loop. Some generated referral ids are swapped for real referrals
the caller may see, and some referrals are addressed to a real directory service, so that the
generated requests reach past "not found" into the handlers.
"""

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
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.referrals.api import app
from shared.settings import Settings
from tests.helpers import send_case, synthetic_nhs_number
from tests.referrals.support import ALL_STATES, Parties, drive_to, new_parties

schema = schemathesis.openapi.from_dict(app.openapi())

# examples per operation (plus schemathesis's coverage-phase cases); generation dominates the
# time, so the second role gets fewer to keep the file well under a minute
FUZZ = {
    "max_examples": 30,
    "deadline": None,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}


@pytest.fixture(scope="module")
async def session_loop() -> asyncio.AbstractEventLoop:
    """The loop the app's database engine lives on (the test session's)."""
    return asyncio.get_running_loop()


@pytest.fixture(scope="module")
async def fuzz_client(referrals_client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The running app; an unhandled error comes back as the 500 a caller would see."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://referrals") as c:
        yield c


@pytest.fixture(scope="module")
async def fuzz_world(
    referrals_client: httpx.AsyncClient, settings: Settings, referrals_sessions: async_sessionmaker
) -> dict[str, Any]:
    """Referrals in every state between one referrer and one receiving service."""
    parties = await new_parties(settings, referrals_sessions)
    ids = [
        (await drive_to(referrals_client, settings, parties, state))["id"] for state in ALL_STATES
    ]
    return {"parties": parties, "ids": ids}


def _steer(
    case: Any,
    world: dict[str, Any],
    headers: dict[str, str],
    loop: asyncio.AbstractEventLoop,
    client: httpx.AsyncClient,
) -> None:
    """Point about half the generated requests at real referrals (with their current ETag)
    and make half the generated referrals pass the checks a JSON Schema cannot state (Modulus
    11, SNOMED shape, a directory service, consent), keeping the rest as generated."""
    pick = zlib.crc32(repr((case.method, case.path_parameters, case.query, case.body)).encode())
    if case.path_parameters and "referral_id" in case.path_parameters and pick % 2:
        rid = world["ids"][pick % len(world["ids"])]
        case.path_parameters["referral_id"] = rid
        if case.method.upper() == "POST":
            read = loop.run_until_complete(client.get(f"/referrals/{rid}", headers=headers))
            # (a draft is not visible to the receiving side: then any ETag will do)
            case.headers = {**(case.headers or {}), "If-Match": read.headers.get("etag", 'W/"1"')}
    body = case.body
    if case.path == "/referrals" and isinstance(body, dict) and pick % 2:
        parties: Parties = world["parties"]
        body.update(
            to_service_id=parties.service.id, consent_to_referral=True, reason_codes=["279039007"]
        )
        body.pop("to_org", None)
        if body.get("source") == "onward" or "referred_from" in body:
            body["referred_from"] = world["ids"][pick % len(world["ids"])]
        if isinstance(body.get("patient"), dict):
            body["patient"]["nhs_number"] = synthetic_nhs_number(random.Random(pick))


def _check(case: Any, response: httpx.Response, headers: dict[str, str]) -> None:
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    case.validate_response(response, checks=[not_a_server_error], headers=headers)


@schema.parametrize()
@hypothesis_settings(**FUZZ)
def test_no_5xx_as_a_clinician(
    case: Any,
    fuzz_world: dict[str, Any],
    session_loop: asyncio.AbstractEventLoop,
    fuzz_client: httpx.AsyncClient,
    settings: Settings,
) -> None:
    headers = fuzz_world["parties"].referrer(settings, "clinician")
    _steer(case, fuzz_world, headers, session_loop, fuzz_client)
    _check(case, send_case(case, headers, session_loop, fuzz_client), headers)


@schema.parametrize()
@hypothesis_settings(**{**FUZZ, "max_examples": 20})
def test_no_5xx_as_service_staff(
    case: Any,
    fuzz_world: dict[str, Any],
    session_loop: asyncio.AbstractEventLoop,
    fuzz_client: httpx.AsyncClient,
    settings: Settings,
) -> None:
    headers = fuzz_world["parties"].receiver(settings, "service_staff")
    _steer(case, fuzz_world, headers, session_loop, fuzz_client)
    _check(case, send_case(case, headers, session_loop, fuzz_client), headers)
