"""A referral ServiceRequest as other systems send it (no Waymark extensions): the person by
NHS number identifier, the requester by ODS code, the receiving service by ODS code and a
service code the directory maps. Runs against the real directory process of the test stack
(the referrals service reads its API) and the referrals app on the real database.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.pseudonym import pseudonymise
from shared.settings import Settings
from tests.conftest import auth
from tests.directory.conftest import Provider, create_published, new_provider
from tests.helpers import eventually, synthetic_nhs_number
from tests.referrals.support import events_of, new_org, outbox_of, query, referral_row

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED = "http://snomed.info/sct"
ERS = "https://fhir.nhs.uk/Id/ers-service"
CATEGORY = "https://waymark.nhs.example/fhir/CodeSystem/service-category"
EXT = "https://waymark.nhs.example/fhir/StructureDefinition/"


def standard(referrer_org: str, ods: str, code: str, nhs: str, **over: Any) -> dict[str, Any]:
    sr: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "subject": {"identifier": {"system": NHS, "value": nhs}},
        "requester": {"identifier": {"system": ODS, "value": referrer_org}},
        "performer": [
            {"type": "Organization", "identifier": {"system": ODS, "value": ods}},
            {"type": "HealthcareService", "identifier": {"system": ERS, "value": code}},
        ],
        "category": [{"coding": [{"system": CATEGORY, "code": "msk_physiotherapy"}]}],
        "reasonCode": [{"coding": [{"system": SNOMED, "code": "279039007"}]}],
        "note": [{"text": "Low back pain for 14 weeks; physiotherapy please."}],
    }
    sr.update(over)
    return sr


class World:
    def __init__(self, provider: Provider, service_id: str, code: str) -> None:
        self.provider, self.service_id, self.code = provider, service_id, code


@pytest.fixture
async def directory(running_apps: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running_apps.api_url("directory"), timeout=30) as c:
        yield c


@pytest.fixture
async def world(
    directory: httpx.AsyncClient,
    settings: Settings,
    referrals_sessions: async_sessionmaker,
) -> World:
    """A published directory service with an e-RS service id, in the referrals replica."""
    provider = await new_provider(directory, settings)
    svc = await create_published(directory, provider)
    code = str(uuid.uuid4().int % 10**9)
    r = await directory.put(
        f"/services/{svc['id']}/identifiers",
        json={"identifiers": [{"system": ERS, "value": code}]},
        headers=provider.headers,
    )
    assert r.status_code == 200, r.text

    async def replicated() -> bool:
        rows = await query(
            referrals_sessions,
            "SELECT 1 FROM directory_service WHERE service_id = :s",
            s=svc["id"],
        )
        return bool(rows)

    await eventually(replicated, timeout=60)
    return World(provider, svc["id"], code)


async def post(client: httpx.AsyncClient, headers: dict[str, str], sr: Any) -> httpx.Response:
    return await client.post(
        "/fhir/ServiceRequest", json=sr, headers={**headers, "content-type": FHIR_JSON}
    )


class TestStandardServiceRequest:
    async def test_a_standard_request_reaches_the_mapped_directory_service(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        world: World,
    ) -> None:
        gp = new_org("GP")
        nhs = synthetic_nhs_number()
        sr = standard(gp, world.provider.code, world.code, nhs)
        r = await post(referrals_client, auth(settings, role="clinician", org=gp), sr)
        assert r.status_code == 201, r.text
        ServiceRequest.model_validate(r.json())
        row = await referral_row(referrals_sessions, r.json()["id"])
        assert row.to_service_id == world.service_id
        assert row.to_org == world.provider.code and row.from_org == gp
        assert row.nhs_number == nhs and row.given_name is None and row.birth_date is None
        assert (row.consent_to_referral, row.consent_basis) == (True, "implied")
        assert row.consent_to_carer_sharing is False  # never implied
        events = await events_of(referrals_sessions, row.id)
        assert [e.event_type for e in events] == ["uk.waymark.referral.submitted"]
        assert events[0].payload["subject"] == pseudonymise(nhs, settings)
        assert events[0].payload["data"]["to_service_id"] == world.service_id
        # the receiving service sees it and reads it back as FHIR
        receiver = auth(settings, role="service_staff", org=world.provider.code)
        back = await referrals_client.get(f"/fhir/ServiceRequest/{row.id}", headers=receiver)
        assert back.status_code == 200
        patient = back.json()["contained"][0]
        assert "name" not in patient and "birthDate" not in patient

    async def test_the_consent_extension_when_sent_is_kept_explicit(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        world: World,
    ) -> None:
        gp = new_org("GP")
        ext = [
            {"url": EXT + "consent-to-referral", "valueBoolean": True},
            {"url": EXT + "consent-to-carer-sharing", "valueBoolean": True},
        ]
        sr = standard(gp, world.provider.code, world.code, synthetic_nhs_number(), extension=ext)
        r = await post(referrals_client, auth(settings, role="clinician", org=gp), sr)
        assert r.status_code == 201, r.text
        row = await referral_row(referrals_sessions, r.json()["id"])
        assert (row.consent_basis, row.consent_to_carer_sharing) == ("explicit", True)

    @pytest.mark.parametrize(
        "change, word",
        [
            ({"code": "000000000"}, "no directory service carries"),
            ({"ods": "SOMEONE-ELSE"}, "does not run"),
            ({"system": "not a uri"}, "performer"),
            ({"category": "crisis"}, "crisis"),
            ({"category": "banana"}, "category"),
            ({"requester": "OTHER-ORG"}, "not your organisation"),
            ({"nhs": "9434765918"}, "NHS number"),
            ({"subject": {"reference": "Patient/1"}}, "NHS number"),
            ({"consent": False}, "consent"),
        ],
        ids=[
            "unknown-code",
            "ods-of-another-org",
            "bad-system",
            "other-category",
            "unknown-category",
            "requester-not-caller",
            "bad-nhs-number",
            "subject-without-identifier",
            "consent-refused",
        ],
    )
    async def test_what_cannot_be_mapped_is_a_422_operation_outcome(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        world: World,
        change: dict[str, Any],
        word: str,
    ) -> None:
        gp = new_org("GP")
        nhs = change.get("nhs", synthetic_nhs_number())
        sr = standard(gp, change.get("ods", world.provider.code), world.code, nhs)
        sr = copy.deepcopy(sr)
        if "code" in change:
            sr["performer"][1]["identifier"]["value"] = change["code"]
        if "system" in change:
            sr["performer"][1]["identifier"]["system"] = change["system"]
        if "category" in change:
            sr["category"][0]["coding"][0]["code"] = change["category"]
        if "requester" in change:
            sr["requester"]["identifier"]["value"] = change["requester"]
        if "subject" in change:
            sr["subject"] = change["subject"]
        if "consent" in change:
            sr["extension"] = [{"url": EXT + "consent-to-referral", "valueBoolean": False}]
        r = await post(referrals_client, auth(settings, role="clinician", org=gp), sr)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith(FHIR_JSON)
        text = " ".join(i["diagnostics"] for i in r.json()["issue"])
        assert word in text, text
        assert nhs not in r.text
        assert await outbox_of(referrals_sessions, pseudonymise(nhs, settings)) == []

    async def test_an_identifier_names_one_service(
        self, directory: httpx.AsyncClient, settings: Settings, world: World
    ) -> None:
        other = await create_published(directory, world.provider)
        r = await directory.put(
            f"/services/{other['id']}/identifiers",
            json={"identifiers": [{"system": ERS, "value": world.code}]},
            headers=world.provider.headers,
        )
        assert r.status_code == 409, r.text
        assert world.service_id in r.json()["detail"]
        found = await directory.get(
            "/service-identifiers",
            params={"system": ERS, "value": world.code},
            headers=auth(settings, role="clinician", org=new_org()),
        )
        assert [s["service_id"] for s in found.json()] == [world.service_id]

    async def test_only_the_services_own_organisation_sets_its_identifiers(
        self, directory: httpx.AsyncClient, settings: Settings, world: World
    ) -> None:
        r = await directory.put(
            f"/services/{world.service_id}/identifiers",
            json={"identifiers": [{"system": ERS, "value": "1"}]},
            headers=auth(settings, role="service_staff", org=new_org()),
        )
        assert r.status_code == 403, r.text
        got = await directory.get(
            f"/services/{world.service_id}/identifiers",
            headers=auth(settings, role="clinician", org=new_org()),
        )
        assert got.json()["identifiers"] == [{"system": ERS, "value": world.code}]
