"""Fixtures of the page tests that read the other services through the instance's running
APIs and Temporal: one journey (a person referred, not accepted, referred again: the journey
raises an alert) and the demo directory, each made once for all the page modules."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings
from tests.conftest import auth
from tests.dashboard.page_support import EVIL, Journey
from tests.helpers import create_care_plan, eventually, referral_body, synthetic_nhs_number
from tests.notifications.alert_support import rows


@pytest.fixture(scope="package")
async def sessions(infra: Settings) -> AsyncIterator[Any]:
    """Sessions on the notifications schema of the test database, for the whole package (the
    journey, made once for every page module, reads with them)."""
    engine = make_engine(infra, "notifications")
    yield make_sessionmaker(engine)
    await engine.dispose()


def _api(s: Settings, service: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=s.api_url(service), timeout=30)


@pytest.fixture(scope="package")
async def journey(running_apps: Settings, sessions: Any) -> Journey:
    s = running_apps
    j = Journey()
    j.family = f"Synthetic-{uuid.uuid4().hex[:6]}"
    patient = {
        "nhs_number": synthetic_nhs_number(),
        "given_name": "Robin",
        "family_name": j.family,
        "birth_date": "1970-05-06",
    }
    gp = auth(s, role="clinician", org="GP-A81001")
    async with _api(s, "referrals") as http:
        first = await http.post(
            "/referrals",
            json=referral_body(patient=patient, clinical_summary=f"Summary with {EVIL} in it"),
            headers=gp,
        )
        assert first.status_code == 201, first.text
        j.first = first.json()
        rejected = await http.post(
            f"/referrals/{j.first['id']}/reject",
            json={"reason_code": "does-not-meet-criteria"},
            headers={**auth(s, role="service_staff", org="PAIN-1"), "If-Match": 'W/"1"'},
        )
        assert rejected.status_code == 200, rejected.text
        again = await http.post(
            "/referrals",
            json=referral_body(
                patient=patient, to_org="PAIN-RTH", to_service_id="svc-pain-mgmt-programme"
            ),
            headers=gp,
        )
        assert again.status_code == 201, again.text
        j.again = again.json()
    j.patient_id = j.first["patient_id"]
    async with _api(s, "care_plans") as http:
        plan = await create_care_plan(
            http,
            gp,
            {
                "nhs_number": patient["nhs_number"],
                "consented_organisations": ["PAIN-RTH"],
                "content": {
                    "what_matters_to_me": "Gardening again",
                    "goals": [{"what": "Walk"}],
                    "communication": {"easy_read": True},
                },
            },
        )
        assert plan.status_code == 201, plan.text
        screen = await http.post(
            f"/care-plans/{plan.json()['id']}/assessments",
            json={"instrument": "GAD-7", "answers": {str(i): 2 for i in range(1, 8)}},
            headers=gp,
        )
        assert screen.status_code == 201, screen.text

    async def alert() -> Any:
        found = await rows(
            sessions,
            "SELECT alert_id FROM alert WHERE patient_id = :p AND rule = :r",
            p=j.patient_id,
            r="looping.re_referral",
        )
        return found[0].alert_id if found else None

    j.alert_id = await eventually(alert, timeout=120, interval=0.5)
    return j


@pytest.fixture(scope="package")
async def directory(running_apps: Settings) -> str:
    """The demo directory, created through the directory API; a postcode of its area."""
    from services.directory.data.generate_postcodes import read as read_postcodes
    from services.directory.demo import seed_directory

    await asyncio.to_thread(seed_directory, running_apps)
    return str(read_postcodes()[0][0])
