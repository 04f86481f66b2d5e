"""The FHIR R4 face of referrals (services/referrals/fhir.py) on the real database: ServiceRequest
in and out, the round trip, Task status, search, and OperationOutcome for everything refused.

Everything Waymark sends is checked with the `fhir.resources` R4B models (ServiceRequest, Task,
Bundle and OperationOutcome are unchanged between R4 and R4B).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.pseudonym import pseudonymise
from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import synthetic_nhs_number
from tests.referrals.support import (
    ALL_STATES,
    REASON,
    Parties,
    create,
    drive_to,
    events_of,
    new_org,
    new_parties,
    new_service,
    outbox_of,
    personal_data,
    referrals_of,
    step,
)

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
BASE = "https://waymark.nhs.example/fhir"
EXT = f"{BASE}/StructureDefinition/"
DIRECTORY = f"{BASE}/Id/directory-service"
PSEUDONYM = f"{BASE}/Id/patient-pseudonym"
STATE_SYSTEM = f"{BASE}/CodeSystem/referral-state"
REASON_SYSTEM = f"{BASE}/CodeSystem/transition-reason"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"

#: FHIR R4 ServiceRequest.status for each Waymark state (request-status value set)
SR_STATUS = {
    "draft": "draft",
    "submitted": "active",
    "accepted": "active",
    "booked": "active",
    "attended": "active",
    "did_not_attend": "active",
    "on_hold": "on-hold",
    "rejected": "revoked",
    "returned": "revoked",
    "cancelled": "revoked",
    "discharged": "completed",
}
#: FHIR R4 Task.status for each Waymark state (task-status value set); businessStatus carries
#: the Waymark state itself
TASK_STATUS = {
    "draft": "draft",
    "submitted": "requested",
    "accepted": "accepted",
    "rejected": "rejected",
    "returned": "rejected",
    "booked": "in-progress",
    "attended": "in-progress",
    "did_not_attend": "in-progress",
    "on_hold": "on-hold",
    "discharged": "completed",
    "cancelled": "cancelled",
}
#: states whose Task says why (statusReason: the coded reason of the last transition)
WITH_REASON = {
    "rejected": "reject",
    "returned": "return",
    "cancelled": "cancel",
    "on_hold": "hold",
    "discharged": "discharge",
}


def service_request(service_id: str, *, nhs: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid R4 ServiceRequest for a new referral, as an EHR would send it."""
    sr: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "identifier": [{"system": NHS, "value": nhs or synthetic_nhs_number()}],
                "name": [{"family": f"Synthetic-{uuid.uuid4().hex[:6]}", "given": ["Alex", "Jo"]}],
                "birthDate": "1968-11-23",
            }
        ],
        "subject": {"reference": "#patient"},
        "extension": [
            {"url": EXT + "consent-to-referral", "valueBoolean": True},
            {"url": EXT + "consent-to-carer-sharing", "valueBoolean": True},
            {"url": EXT + "referral-source", "valueCode": "gp"},
            {"url": EXT + "communication-need", "valueString": "interpreter: Polish"},
            {"url": EXT + "communication-need", "valueString": "easy read letters"},
        ],
        "requester": {"display": "Dr Alice Test"},
        "performer": [{"identifier": {"system": DIRECTORY, "value": service_id}}],
        "reasonCode": [
            {"coding": [{"system": SNOMED, "code": "279039007", "display": "Low back pain"}]},
            {"coding": [{"system": SNOMED, "code": "35489007"}]},
        ],
        "note": [{"text": f"Back pain for 8 months; PHQ-9 14. {uuid.uuid4().hex}"}],
    }
    sr.update(overrides)
    return sr


def _ext(sr: dict[str, Any], name: str) -> list[Any]:
    return [
        next(v for k, v in e.items() if k.startswith("value"))
        for e in sr.get("extension", [])
        if e["url"] == EXT + name
    ]


def modelled(sr: dict[str, Any]) -> dict[str, Any]:
    """What Waymark models of a ServiceRequest: the fields a round trip must keep."""
    ref = sr["subject"]["reference"]
    [patient] = [
        c for c in sr["contained"] if c["resourceType"] == "Patient" and f"#{c['id']}" == ref
    ]
    return {
        "status": sr["status"],
        "intent": sr["intent"],
        "priority": sr.get("priority"),
        "nhs_number": [i["value"] for i in patient["identifier"] if i["system"] == NHS],
        "family": patient["name"][0]["family"],
        "given": patient["name"][0]["given"],
        "birthDate": patient["birthDate"],
        "performer": [
            p["identifier"]["value"]
            for p in sr["performer"]
            if p["identifier"]["system"] == DIRECTORY
        ],
        "reasons": [
            c["code"] for rc in sr["reasonCode"] for c in rc["coding"] if c["system"] == SNOMED
        ],
        "note": " ".join(n["text"] for n in sr["note"]),
        "practitioner": sr["requester"]["display"],
        "consent": _ext(sr, "consent-to-referral"),
        "carer_sharing": _ext(sr, "consent-to-carer-sharing"),
        "source": _ext(sr, "referral-source"),
        "communication_needs": _ext(sr, "communication-need"),
        "based_on": [b["reference"] for b in sr.get("basedOn", [])],
    }


def assert_outcome(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == FHIR_JSON
    body = r.json()
    OperationOutcome.model_validate(body)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and all(i["severity"] == "error" for i in body["issue"])
    text = " ".join(i.get("diagnostics", "") for i in body["issue"])
    for w in words:
        assert w in text, (w, text)
    return body


@pytest.fixture(scope="module")
async def lenient_client(referrals_client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The same running app, but an unhandled error comes back as the 500 a caller would see
    instead of being raised into the test."""
    from services.referrals.api import app

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://referrals") as c:
        yield c


@pytest.fixture
async def parties(settings: Settings, referrals_sessions: async_sessionmaker) -> Parties:
    return await new_parties(settings, referrals_sessions)


async def post_sr(
    client: httpx.AsyncClient, headers: dict[str, str], resource: Any, **kw: Any
) -> httpx.Response:
    return await client.post(
        "/fhir/ServiceRequest",
        content=json.dumps(resource).encode(),
        headers={**headers, "content-type": FHIR_JSON, **kw},
    )


class TestCreate:
    async def test_a_valid_service_request_creates_a_referral(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        sent = service_request(parties.service.id)
        r = await post_sr(referrals_client, parties.referrer(settings), sent)
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].split(";")[0] == FHIR_JSON
        out = r.json()
        ServiceRequest.model_validate(out)
        assert out["resourceType"] == "ServiceRequest"
        assert (
            r.headers["location"] == f"http://referrals/fhir/ServiceRequest/{out['id']}/_history/1"
        )
        assert r.headers["etag"] == 'W/"1"'
        assert out["meta"]["versionId"] == "1"

        # the referral Waymark made of it
        got = await referrals_client.get(
            f"/referrals/{out['id']}", headers=parties.referrer(settings)
        )
        ref = got.json()
        patient = sent["contained"][0]
        assert ref["state"] == "submitted"
        assert ref["nhs_number"] == patient["identifier"][0]["value"]
        assert (ref["given_name"], ref["family_name"], ref["birth_date"]) == (
            "Alex Jo",
            patient["name"][0]["family"],
            "1968-11-23",
        )
        assert (ref["from_org"], ref["from_practitioner"]) == (
            parties.referrer_org,
            "Dr Alice Test",
        )
        assert (ref["to_service_id"], ref["to_org"], ref["service_category"]) == (
            parties.service.id,
            parties.receiver_org,
            parties.service.category,
        )
        assert ref["reason_codes"] == ["279039007", "35489007"]
        assert ref["clinical_summary"] == sent["note"][0]["text"]
        assert (ref["priority"], ref["source"]) == ("urgent", "gp")
        assert ref["consent_to_referral"] is True and ref["consent_to_carer_sharing"] is True
        assert ref["communication_needs"] == ["interpreter: Polish", "easy read letters"]
        assert ref["referred_from"] is None

        # its event, like any other, carries nothing personal
        [ev] = await events_of(referrals_sessions, out["id"])
        assert ev.event_type == "uk.waymark.referral.submitted"
        dumped = json.dumps(ev.payload)
        for value in personal_data(ref):
            assert value not in dumped, value

    async def test_a_draft_service_request_saves_a_draft(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        r = await post_sr(
            referrals_client,
            parties.referrer(settings),
            service_request(parties.service.id, status="draft"),
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "draft"
        assert await events_of(referrals_sessions, r.json()["id"]) == []

    async def test_plain_application_json_is_accepted_too(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        r = await referrals_client.post(
            "/fhir/ServiceRequest",
            json=service_request(parties.service.id),
            headers=parties.referrer(settings),
        )
        assert r.status_code == 201, r.text

    async def test_an_idempotent_retry_replays_the_first_response(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        sent = service_request(parties.service.id)
        headers = {**parties.referrer(settings), "Idempotency-Key": str(uuid.uuid4())}
        first = await post_sr(referrals_client, headers, sent)
        again = await post_sr(referrals_client, headers, sent)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["content-type"].split(";")[0] == FHIR_JSON
        nhs = sent["contained"][0]["identifier"][0]["value"]
        assert len(await referrals_of(referrals_sessions, pseudonymise(nhs, settings))) == 1

    async def test_based_on_makes_an_onward_referral(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        parent = await create(referrals_client, settings, parties)
        physio = await new_service(settings, referrals_sessions, category="msk_physiotherapy")
        sent = service_request(physio.id, basedOn=[{"reference": f"ServiceRequest/{parent['id']}"}])
        sent["extension"] = [e for e in sent["extension"] if e["url"] != EXT + "referral-source"]
        # the receiving pain service refers the patient on
        r = await post_sr(referrals_client, parties.receiver(settings), sent)
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["basedOn"] == [{"reference": f"ServiceRequest/{parent['id']}"}]
        assert _ext(out, "referral-source") == ["onward"]
        # an organisation that cannot see the parent cannot name it
        r2 = await post_sr(referrals_client, auth(settings, role="clinician", org=new_org()), sent)
        assert r2.status_code == 422

    @pytest.mark.parametrize(
        "fhir_priority, waymark",
        [("routine", "routine"), ("urgent", "urgent"), ("asap", "urgent"), ("stat", "urgent")],
    )
    async def test_fhir_priorities_map_onto_routine_and_urgent(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
        fhir_priority: str,
        waymark: str,
    ) -> None:
        r = await post_sr(
            referrals_client,
            parties.referrer(settings),
            service_request(parties.service.id, priority=fhir_priority),
        )
        assert r.status_code == 201, r.text
        assert r.json()["priority"] == waymark


class TestRoundTrip:
    async def test_fhir_to_waymark_to_fhir_keeps_what_waymark_models(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        sent = service_request(parties.service.id)
        created = await post_sr(referrals_client, parties.referrer(settings), sent)
        assert created.status_code == 201, created.text
        read = await referrals_client.get(
            f"/fhir/ServiceRequest/{created.json()['id']}", headers=parties.receiver(settings)
        )
        assert read.status_code == 200, read.text
        assert read.headers["content-type"].split(";")[0] == FHIR_JSON
        assert read.headers["etag"] == 'W/"1"'
        back = read.json()
        ServiceRequest.model_validate(back)
        assert back == created.json()
        assert modelled(back) == modelled(sent)

        # and what Waymark adds: its ids, the category from the directory, who referred
        [patient] = back["contained"]
        assert {i["system"] for i in patient["identifier"]} == {NHS, PSEUDONYM}
        assert back["identifier"] == [{"system": f"{BASE}/Id/referral", "value": back["id"]}]
        assert back["category"][0]["coding"][0]["code"] == parties.service.category
        assert back["requester"]["identifier"] == {"system": ODS, "value": parties.referrer_org}
        assert back["performer"][0]["display"] == parties.receiver_org

    async def test_the_read_back_resource_makes_the_same_referral_again(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        first = await post_sr(
            referrals_client, parties.referrer(settings), service_request(parties.service.id)
        )
        again = await post_sr(referrals_client, parties.referrer(settings), first.json())
        assert again.status_code == 201, again.text
        assert again.json()["id"] != first.json()["id"]
        assert modelled(again.json()) == modelled(first.json())

    async def test_a_referral_made_over_the_waymark_api_reads_as_a_valid_service_request(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        ref = await create(
            referrals_client,
            settings,
            parties,
            consent_to_carer_sharing=True,
            communication_needs=["BSL interpreter", "carer attends"],
        )
        r = await referrals_client.get(
            f"/fhir/ServiceRequest/{ref['id']}", headers=parties.referrer(settings)
        )
        sr = r.json()
        ServiceRequest.model_validate(sr)
        m = modelled(sr)
        assert m["nhs_number"] == [ref["nhs_number"]]
        assert (m["family"], m["given"], m["birthDate"]) == (
            ref["family_name"],
            ref["given_name"].split(" "),
            ref["birth_date"],
        )
        assert (m["performer"], m["reasons"], m["note"]) == (
            [ref["to_service_id"]],
            ref["reason_codes"],
            ref["clinical_summary"],
        )
        assert (m["consent"], m["carer_sharing"], m["source"]) == ([True], [True], ["gp"])
        assert m["communication_needs"] == ["BSL interpreter", "carer attends"]
        assert (m["status"], m["priority"], m["practitioner"]) == (
            "active",
            ref["priority"],
            ref["from_practitioner"],
        )
        assert sr["meta"]["lastUpdated"] and sr["authoredOn"]


class TestStatus:
    @pytest.mark.parametrize("state", ALL_STATES)
    async def test_task_and_service_request_status_for_each_state(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties, state: str
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, state)
        # a draft has not been sent: only its referrer sees it
        reader = parties.referrer if state == "draft" else parties.receiver
        r = await referrals_client.get(f"/fhir/Task/{referral['id']}", headers=reader(settings))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].split(";")[0] == FHIR_JSON
        assert r.headers["etag"] == f'W/"{referral["version"]}"'
        task = r.json()
        Task.model_validate(task)
        assert task["resourceType"] == "Task" and task["id"] == referral["id"]
        assert task["status"] == TASK_STATUS[state]
        assert task["businessStatus"]["coding"] == [{"system": STATE_SYSTEM, "code": state}]
        assert task["businessStatus"]["text"] == state.replace("_", " ")
        assert task["intent"] == "order"
        assert task["focus"] == {"reference": f"ServiceRequest/{referral['id']}"}
        assert task["for"] == {
            "reference": f"Patient/{referral['patient_id'].replace('_', '-')}",
            "identifier": {"system": PSEUDONYM, "value": referral["patient_id"]},
        }
        assert task["requester"]["identifier"]["value"] == parties.referrer_org
        assert task["owner"]["identifier"]["value"] == parties.receiver_org
        assert task["meta"]["versionId"] == str(referral["version"])
        if state in WITH_REASON:
            assert task["statusReason"] == {
                "coding": [{"system": REASON_SYSTEM, "code": REASON[WITH_REASON[state]]}]
            }
        else:
            assert "statusReason" not in task
        if state == "booked":
            start = datetime.fromisoformat(task["restriction"]["period"]["start"])
            assert start == datetime.fromisoformat(referral["appointment_at"])
        else:
            assert "restriction" not in task
        # the Task names no patient: only the pseudonymous id
        assert referral["nhs_number"] not in r.text
        assert referral["family_name"] not in r.text

        sr = await referrals_client.get(
            f"/fhir/ServiceRequest/{referral['id']}", headers=parties.referrer(settings)
        )
        ServiceRequest.model_validate(sr.json())
        assert sr.json()["status"] == SR_STATUS[state]

    async def test_the_task_reports_the_reason_of_the_last_transition(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "attended")
        referral = await step(
            referrals_client,
            settings,
            parties,
            referral,
            "discharge",
            body={"reason_code": "goals-met"},
        )
        task = (
            await referrals_client.get(
                f"/fhir/Task/{referral['id']}", headers=parties.referrer(settings)
            )
        ).json()
        assert task["statusReason"]["coding"][0]["code"] == "goals-met"


class TestSearch:
    @pytest.fixture
    async def seeded(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> dict[str, Any]:
        """One referrer organisation: patient A has three referrals (one a draft), patient B
        one; then, after `mid`, a fourth for A."""
        parties = await new_parties(settings, referrals_sessions)
        a, b = synthetic_nhs_number(), synthetic_nhs_number()

        def patient(nhs: str) -> dict[str, Any]:
            return {
                "nhs_number": nhs,
                "given_name": "Sam",
                "family_name": "Synthetic",
                "birth_date": "1990-02-02",
            }

        a1 = await create(referrals_client, settings, parties, patient=patient(a))
        a2 = await create(referrals_client, settings, parties, patient=patient(a), as_draft=True)
        b1 = await create(referrals_client, settings, parties, patient=patient(b))
        mid = datetime.now(UTC)
        a3 = await create(referrals_client, settings, parties, patient=patient(a))
        return {
            "parties": parties,
            "a": a,
            "b": b,
            "mid": mid,
            "a1": a1,
            "a2": a2,
            "b1": b1,
            "a3": a3,
            "pid_a": a1["patient_id"],
        }

    async def _search(
        self, client: httpx.AsyncClient, settings: Settings, seeded: dict[str, Any], **params: Any
    ) -> dict[str, Any]:
        r = await client.get(
            "/fhir/ServiceRequest", params=params, headers=seeded["parties"].referrer(settings)
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].split(";")[0] == FHIR_JSON
        bundle = r.json()
        Bundle.model_validate(bundle)
        assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
        for e in bundle.get("entry", []):
            assert e["search"] == {"mode": "match"}
            # under the base that served the search (the test client's)
            assert e["fullUrl"] == f"http://referrals/fhir/ServiceRequest/{e['resource']['id']}"
            ServiceRequest.model_validate(e["resource"])
        return bundle

    @staticmethod
    def _ids(bundle: dict[str, Any]) -> set[str]:
        return {e["resource"]["id"] for e in bundle.get("entry", [])}

    async def test_by_patient_nhs_number_and_pseudonym(
        self, referrals_client: httpx.AsyncClient, settings: Settings, seeded: dict[str, Any]
    ) -> None:
        want_a = {seeded[k]["id"] for k in ("a1", "a2", "a3")}
        for patient in (
            f"{NHS}|{seeded['a']}",
            seeded["pid_a"],
            f"Patient/{seeded['pid_a']}",
            f"{NHS}|{seeded['a'][:3]} {seeded['a'][3:6]} {seeded['a'][6:]}",
        ):
            bundle = await self._search(referrals_client, settings, seeded, patient=patient)
            assert bundle["total"] == 3, patient
            assert self._ids(bundle) == want_a, patient
        b = await self._search(referrals_client, settings, seeded, patient=f"{NHS}|{seeded['b']}")
        assert (b["total"], self._ids(b)) == (1, {seeded["b1"]["id"]})
        nobody = await self._search(
            referrals_client, settings, seeded, patient=f"{NHS}|{synthetic_nhs_number()}"
        )
        assert nobody["total"] == 0 and nobody.get("entry", []) == []

    async def test_by_status(
        self, referrals_client: httpx.AsyncClient, settings: Settings, seeded: dict[str, Any]
    ) -> None:
        active = await self._search(referrals_client, settings, seeded, status="active")
        assert active["total"] == 3
        assert self._ids(active) == {seeded[k]["id"] for k in ("a1", "b1", "a3")}
        draft = await self._search(referrals_client, settings, seeded, status="draft")
        assert (draft["total"], self._ids(draft)) == (1, {seeded["a2"]["id"]})
        both = await self._search(
            referrals_client, settings, seeded, status="active", patient=f"{NHS}|{seeded['a']}"
        )
        assert both["total"] == 2
        revoked = await self._search(referrals_client, settings, seeded, status="revoked")
        assert revoked["total"] == 0

    async def test_by_last_updated(
        self, referrals_client: httpx.AsyncClient, settings: Settings, seeded: dict[str, Any]
    ) -> None:
        mid = seeded["mid"].isoformat()
        recent = await self._search(referrals_client, settings, seeded, _lastUpdated=f"ge{mid}")
        assert (recent["total"], self._ids(recent)) == (1, {seeded["a3"]["id"]})
        # a change after `mid` brings an older referral into the window
        await step(referrals_client, settings, seeded["parties"], seeded["a1"], "accept")
        recent = await self._search(referrals_client, settings, seeded, _lastUpdated=f"gt{mid}")
        assert self._ids(recent) == {seeded["a1"]["id"], seeded["a3"]["id"]}
        today = datetime.now(UTC).date()  # a date-only _lastUpdated is midnight UTC
        yesterday = (today - timedelta(days=1)).isoformat()
        tomorrow = (today + timedelta(days=1)).isoformat()
        everything = await self._search(
            referrals_client, settings, seeded, _lastUpdated=f"ge{yesterday}"
        )
        assert everything["total"] == 4
        later = await self._search(referrals_client, settings, seeded, _lastUpdated=f"ge{tomorrow}")
        assert later["total"] == 0
        zulu = seeded["mid"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        z = await self._search(referrals_client, settings, seeded, _lastUpdated=f"ge{zulu}")
        assert z["total"] == 2

    async def test_count_limits_the_entries_not_the_total(
        self, referrals_client: httpx.AsyncClient, settings: Settings, seeded: dict[str, Any]
    ) -> None:
        bundle = await self._search(
            referrals_client, settings, seeded, patient=f"{NHS}|{seeded['a']}", _count=1
        )
        assert bundle["total"] == 3 and len(bundle["entry"]) == 1

    async def test_search_sees_only_what_the_caller_may_read(
        self, referrals_client: httpx.AsyncClient, settings: Settings, seeded: dict[str, Any]
    ) -> None:
        r = await referrals_client.get(
            "/fhir/ServiceRequest",
            params={"patient": f"{NHS}|{seeded['a']}"},
            headers=auth(settings, role="clinician", org=new_org()),
        )
        assert r.json()["total"] == 0
        # the receiving service and the ICS's coordinator see the submitted ones; the draft is
        # the referrer's alone
        p = seeded["parties"]
        recv = await referrals_client.get(
            "/fhir/ServiceRequest",
            params={"patient": f"{NHS}|{seeded['a']}"},
            headers=p.receiver(settings),
        )
        assert recv.json()["total"] == 2  # a1 and a3; a2 is a draft
        coord = await referrals_client.get(
            "/fhir/ServiceRequest",
            headers=auth(settings, role="coordinator", org=new_org("ICB"), ics=p.ics),
        )
        assert coord.json()["total"] == 3

    @pytest.mark.parametrize(
        "params, word",
        [
            ({"patient": "https://example.org/mrn|12345"}, "nhs-number"),
            ({"patient": f"{NHS}|1234567890"}, "NHS number"),
            ({"patient": f"{NHS}|"}, "NHS number"),
            ({"status": "banana"}, "status"),
            ({"_lastUpdated": "yesterday"}, "_lastUpdated"),
            ({"_lastUpdated": "le2026-01-01"}, "_lastUpdated"),
            ({"_lastUpdated": "ge2026-13-45"}, "_lastUpdated"),
            ({"_lastUpdated": "ge2026-01-01T25:61"}, "_lastUpdated"),
            ({"_count": 0}, "_count"),
            ({"_count": 100000}, "_count"),
            ({"_count": "ten"}, "_count"),
            ({"patient": "x" * 121}, "patient"),
        ],
        ids=[
            "other-system",
            "bad-nhs",
            "empty-nhs",
            "status",
            "words",
            "le",
            "bad-date",
            "bad-time",
            "count-0",
            "count-huge",
            "count-words",
            "patient-too-long",
        ],
    )
    async def test_bad_search_parameters_are_a_422_operation_outcome(
        self,
        lenient_client: httpx.AsyncClient,
        settings: Settings,
        params: dict[str, Any],
        word: str,
    ) -> None:
        r = await lenient_client.get(
            "/fhir/ServiceRequest",
            params=params,
            headers=auth(settings, role="clinician", org=new_org()),
        )
        assert r.status_code != 500, r.text
        assert_outcome(r, 422, word)

    @pytest.mark.parametrize(
        "value",
        ["ge9999-12-31T23:59:59-23:59", "ge0001-01-01T00:00:00+01:00", "ge0001-01-01"],
        ids=["after-year-9999-in-utc", "before-year-1-in-utc", "year-1"],
    )
    async def test_an_extreme_last_updated_is_a_4xx_not_a_500(
        self, lenient_client: httpx.AsyncClient, settings: Settings, value: str
    ) -> None:
        r = await lenient_client.get(
            "/fhir/ServiceRequest",
            params={"_lastUpdated": value},
            headers=auth(settings, role="clinician", org=new_org()),
        )
        assert r.status_code != 500, r.text
        if r.status_code == 200:
            Bundle.model_validate(r.json())
        else:
            assert_outcome(r, 422, "_lastUpdated")


# --- refused resources -------------------------------------------------------------------------

Mutator = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Mutator:
    def mutate(sr: dict[str, Any]) -> dict[str, Any]:
        target: Any = sr
        *parents, last = path.split(".")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        target[int(last) if last.isdigit() else last] = value
        return sr

    return mutate


def _drop(path: str) -> Mutator:
    def mutate(sr: dict[str, Any]) -> dict[str, Any]:
        target: Any = sr
        *parents, last = path.split(".")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        del target[last]
        return sr

    return mutate


def _without_ext(name: str) -> Mutator:
    def mutate(sr: dict[str, Any]) -> dict[str, Any]:
        sr["extension"] = [e for e in sr["extension"] if e["url"] != EXT + name]
        return sr

    return mutate


def _ext_value(name: str, **value: Any) -> Mutator:
    def mutate(sr: dict[str, Any]) -> dict[str, Any]:
        sr["extension"] = [e for e in sr["extension"] if e["url"] != EXT + name]
        sr["extension"].append({"url": EXT + name, **value})
        return sr

    return mutate


def _bad_nhs() -> str:
    n = synthetic_nhs_number()
    return n[:9] + str((int(n[9]) + 1) % 10)


BAD_RESOURCES: list[tuple[str, Mutator, str]] = [
    ("wrong-resource-type", _set("resourceType", "Patient"), "ServiceRequest"),
    ("no-resource-type", _drop("resourceType"), "ServiceRequest"),
    ("status-banana", _set("status", "banana"), "status"),
    ("status-completed", _set("status", "completed"), "completed"),
    ("status-revoked", _set("status", "revoked"), "revoked"),
    ("intent-missing", _drop("intent"), "intent"),
    ("subject-missing", _drop("subject"), "subject"),
    ("no-contained-patient", _drop("contained"), "contained Patient"),
    ("subject-not-contained", _set("subject", {"reference": "Patient/123"}), "contained"),
    ("subject-names-another-id", _set("subject", {"reference": "#someone"}), "someone"),
    ("patient-without-nhs-number", _set("contained.0.identifier", []), "NHS number"),
    ("patient-without-name", _drop("contained.0.name"), "name"),
    ("patient-without-birth-date", _drop("contained.0.birthDate"), "birthDate"),
    (
        "nhs-number-mod-11",
        lambda sr: _set("contained.0.identifier.0.value", _bad_nhs())(sr),
        "NHS number",
    ),
    ("nhs-number-letters", _set("contained.0.identifier.0.value", "94347659AB"), "NHS number"),
    ("birth-date-not-a-date", _set("contained.0.birthDate", "1968-02-30"), "birthDate"),
    ("birth-date-year-only", _set("contained.0.birthDate", "1968"), "birth"),
    ("birth-date-year-month", _set("contained.0.birthDate", "1968-11"), "birth"),
    (
        "birth-date-future",
        _set("contained.0.birthDate", (date.today() + timedelta(days=3)).isoformat()),
        "birth",
    ),
    ("no-performer", _drop("performer"), "performer"),
    # another identifier system is a service code the directory maps (test_fhir_standard.py)
    ("performer-identifier-without-system", _drop("performer.0.identifier.system"), "performer"),
    (
        "performer-two-service-codes",
        _set(
            "performer",
            [
                {"identifier": {"system": "https://example.org/a", "value": "1"}},
                {"identifier": {"system": "https://example.org/b", "value": "2"}},
            ],
        ),
        "performer",
    ),
    (
        "performer-ods-only",
        _set("performer", [{"identifier": {"system": ODS, "value": "PAIN-1"}}]),
        "performer",
    ),
    ("two-performers", lambda sr: _set("performer", sr["performer"] * 2)(sr), "performer"),
    (
        "performer-by-reference-only",
        _set("performer", [{"reference": "HealthcareService/1"}]),
        "performer",
    ),
    (
        "unknown-service",
        _set("performer.0.identifier.value", "svc-does-not-exist"),
        "svc-does-not-exist",
    ),
    (
        "closed-service",
        _set("performer.0.identifier.value", "svc-closed-yoga"),
        "temporarily closed",
    ),
    ("no-reason", _drop("reasonCode"), "reasonCode"),
    (
        "reason-not-snomed",
        _set("reasonCode", [{"coding": [{"system": "http://hl7.org/icd10", "code": "M54.5"}]}]),
        "reasonCode",
    ),
    ("reason-text-only", _set("reasonCode", [{"text": "back pain"}]), "reasonCode"),
    ("reason-bad-snomed-format", _set("reasonCode.0.coding.0.code", "12ab"), "SNOMED"),
    ("no-note", _drop("note"), "note"),
    ("note-blank", _set("note", [{"text": "   "}]), "note"),
    ("note-nul", _set("note", [{"text": "back\u0000pain"}]), "clinical_summary"),
    ("note-too-long", _set("note", [{"text": "x" * 10001}]), "clinical_summary"),
    # without the consent extension a referral is made under implied consent (see
    # test_fhir_standard.py); sent, it must be true
    ("consent-false", _ext_value("consent-to-referral", valueBoolean=False), "consent"),
    (
        "consent-as-string",
        _ext_value("consent-to-referral", valueBoolean="yes"),
        "consent-to-referral",
    ),
    ("consent-as-code", _ext_value("consent-to-referral", valueCode="true"), "consent-to-referral"),
    (
        "carer-sharing-as-string",
        _ext_value("consent-to-carer-sharing", valueString="yes"),
        "consent-to-carer-sharing",
    ),
    (
        "referral-source-unknown",
        _ext_value("referral-source", valueCode="hospital"),
        "referral-source",
    ),
    ("communication-need-empty", _ext_value("communication-need", valueString=""), "extension"),
    (
        "communication-need-nul",
        _ext_value("communication-need", valueString="BSL\u0000"),
        "communication",
    ),
    ("priority-unknown", _set("priority", "whenever"), "priority"),
    ("practitioner-too-long", _set("requester", {"display": "D" * 101}), "from_practitioner"),
    (
        "based-on-unknown",
        _set("basedOn", [{"reference": f"ServiceRequest/{uuid.uuid4()}"}]),
        "referred_from",
    ),
    ("extension-not-a-list", _set("extension", {"url": EXT + "consent-to-referral"}), "extension"),
    (
        "too-many-reasons",
        _set(
            "reasonCode",
            [{"coding": [{"system": SNOMED, "code": str(279039007 + i)}]} for i in range(21)],
        ),
        "reason_codes",
    ),
]


class TestRefusedResources:
    @pytest.mark.parametrize(
        "mutate, word", [(m, w) for _, m, w in BAD_RESOURCES], ids=[n for n, _, _ in BAD_RESOURCES]
    )
    async def test_a_bad_resource_is_a_4xx_operation_outcome(
        self,
        lenient_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        mutate: Mutator,
        word: str,
    ) -> None:
        nhs = synthetic_nhs_number()
        sent = mutate(copy.deepcopy(service_request("svc-pain-mgmt", nhs=nhs)))
        r = await post_sr(lenient_client, auth(settings, role="clinician", org=new_org()), sent)
        assert r.status_code != 500, r.text
        assert 400 <= r.status_code < 500, r.text
        assert_outcome(r, r.status_code, word)
        assert nhs not in r.text  # never echo patient data back
        assert await referrals_of(referrals_sessions, pseudonymise(nhs, settings)) == []
        assert await outbox_of(referrals_sessions, pseudonymise(nhs, settings)) == []

    @pytest.mark.parametrize(
        "content, ctype",
        [
            (b"{not json", FHIR_JSON),
            (b"", FHIR_JSON),
            (b"[]", FHIR_JSON),
            (b'"ServiceRequest"', FHIR_JSON),
            (b"null", FHIR_JSON),
            (b"\xff\xfe\x00", FHIR_JSON),
            (b"<ServiceRequest xmlns='http://hl7.org/fhir'/>", "application/fhir+xml"),
            (b"resourceType=ServiceRequest", "application/x-www-form-urlencoded"),
        ],
        ids=["broken", "empty", "array", "string", "null", "binary", "xml", "form"],
    )
    async def test_a_body_that_is_not_a_json_resource_is_a_4xx_operation_outcome(
        self, lenient_client: httpx.AsyncClient, settings: Settings, content: bytes, ctype: str
    ) -> None:
        r = await lenient_client.post(
            "/fhir/ServiceRequest",
            content=content,
            headers={**auth(settings, role="clinician", org=new_org()), "content-type": ctype},
        )
        assert r.status_code != 500, r.text
        assert 400 <= r.status_code < 500, r.text
        assert_outcome(r, r.status_code)

    async def test_a_lone_surrogate_in_the_note_is_a_4xx_not_a_500(
        self, lenient_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        body = json.dumps(service_request("svc-pain-mgmt"))
        body = body.replace("Back pain", "Back \\ud800 pain")
        r = await lenient_client.post(
            "/fhir/ServiceRequest",
            content=body.encode(),
            headers={**auth(settings, role="clinician", org=new_org()), "content-type": FHIR_JSON},
        )
        assert r.status_code != 500, r.text
        assert_outcome(r, r.status_code)

    @pytest.mark.parametrize("role", ["coordinator", "admin"])
    async def test_roles_that_do_not_refer_get_a_403_operation_outcome(
        self, referrals_client: httpx.AsyncClient, settings: Settings, role: str
    ) -> None:
        r = await post_sr(
            referrals_client,
            auth(settings, role=role, org=new_org()),
            service_request("svc-pain-mgmt"),
        )
        body = assert_outcome(r, 403)
        assert body["issue"][0]["code"] == "forbidden"


class TestReadErrors:
    @pytest.mark.parametrize("path", ["/fhir/ServiceRequest/{id}", "/fhir/Task/{id}"])
    async def test_an_unknown_or_hidden_id_is_a_404_operation_outcome(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties, path: str
    ) -> None:
        referral = await create(referrals_client, settings, parties)
        stranger = auth(settings, role="clinician", org=new_org(), ics=parties.ics)
        for rid, headers in (
            (str(uuid.uuid4()), parties.referrer(settings)),
            ("not-a-uuid", parties.referrer(settings)),
            (referral["id"], stranger),
        ):
            r = await referrals_client.get(path.replace("{id}", rid), headers=headers)
            body = assert_outcome(r, 404, "no referral")
            assert body["issue"][0]["code"] == "not-found"
            assert referral["nhs_number"] not in r.text

    @pytest.mark.parametrize(
        "path", ["/fhir/ServiceRequest/{id}", "/fhir/Task/{id}", "/fhir/ServiceRequest"]
    )
    async def test_no_token_is_a_401_operation_outcome(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties, path: str
    ) -> None:
        referral = await create(referrals_client, settings, parties)
        r = await referrals_client.get(path.replace("{id}", referral["id"]))
        body = assert_outcome(r, 401)
        assert body["issue"][0]["code"] == "login"
        assert referral["nhs_number"] not in r.text
