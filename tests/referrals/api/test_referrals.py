"""The referrals HTTP API against the real PostgreSQL (in-process app, real database).

Each test makes its own organisations, ICS, users and synthetic patients, so tests never see
each other's rows.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.auth import mint_token
from shared.errors import PROBLEM_JSON
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from shared.topics import REFERRALS
from tests.conftest import KNOWN_SERVICES, auth, publish_directory_state
from tests.helpers import referral_body, synthetic_nhs_number
from tests.referrals.support import (
    assert_problem,
    audit_of,
    if_match,
    new_ics,
    new_org,
    new_service,
    new_user,
    outbox_of,
    query,
    referrals_of,
    transitions_of,
)


@pytest.fixture(scope="module")
async def lenient_client(referrals_client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The same running app, but an unhandled error comes back as the 500 a caller would see
    instead of being raised into the test."""
    from services.referrals.api import app

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://referrals") as c:
        yield c


async def submit(
    client: httpx.AsyncClient,
    s: Settings,
    *,
    org: str | None = None,
    ics: str = "ICS-1",
    sub: str | None = None,
    role: str = "clinician",
    key: str | None = None,
    **overrides: Any,
) -> tuple[httpx.Response, dict[str, Any]]:
    body = referral_body(**overrides)
    headers = auth(s, role=role, org=org or new_org(), ics=ics, sub=sub)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/referrals", json=body, headers=headers), body


class TestSubmitReferral:
    async def test_a_clinician_creates_a_submitted_referral(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        org, ics = new_org(), new_ics()
        svc = await new_service(settings, referrals_sessions, category="vocational_advice")
        r, body = await submit(
            referrals_client, settings, org=org, ics=ics, to_service_id=svc.id, to_org=svc.org
        )
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("application/json")
        out = r.json()
        assert out["state"] == "submitted"
        assert out["version"] == 1
        assert out["from_org"] == org
        assert (out["to_org"], out["to_service_id"]) == (svc.org, svc.id)
        # the category is the directory's, not the client's
        assert out["service_category"] == "vocational_advice"
        for field in (
            "from_practitioner",
            "to_org",
            "to_service_id",
            "reason_codes",
            "clinical_summary",
            "priority",
            "consent_to_referral",
            "communication_needs",
            "source",
        ):
            assert out[field] == body[field], field
        patient = body["patient"]
        assert out["nhs_number"] == patient["nhs_number"]
        assert out["given_name"] == patient["given_name"]
        assert out["family_name"] == patient["family_name"]
        assert out["birth_date"] == patient["birth_date"]
        assert out["consent_to_carer_sharing"] is False
        assert out["referred_from"] is None
        uuid.UUID(out["id"])
        assert out["created_at"] and out["updated_at"]

    async def test_location_and_etag_name_the_new_referral(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r, _ = await submit(referrals_client, settings)
        assert r.status_code == 201
        assert r.headers["location"] == f"/referrals/{r.json()['id']}"
        assert r.headers["etag"] == 'W/"1"'
        assert "idempotent-replayed" not in r.headers

    async def test_the_patient_id_is_a_pseudonym_not_the_nhs_number(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r, body = await submit(referrals_client, settings)
        out = r.json()
        nhs = body["patient"]["nhs_number"]
        assert out["patient_id"].startswith("pt_")
        assert nhs not in out["patient_id"]
        assert nhs[:6] not in out["patient_id"] and nhs[-6:] not in out["patient_id"]
        assert out["patient_id"] == pseudonymise(nhs, settings)

    async def test_one_patient_keeps_one_pseudonym_across_referrals(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        nhs = synthetic_nhs_number()
        patient = {
            "nhs_number": nhs,
            "given_name": "Sam",
            "family_name": "Synthetic",
            "birth_date": "1980-01-01",
        }
        spaced = dict(patient, nhs_number=f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}")
        r1, _ = await submit(referrals_client, settings, patient=patient)
        r2, _ = await submit(
            referrals_client,
            settings,
            patient=spaced,
            to_org="PHYSIO-1",
            to_service_id="svc-msk-physio",
        )
        r3, _ = await submit(
            referrals_client, settings, patient=dict(patient, nhs_number=synthetic_nhs_number())
        )
        assert r1.status_code == r2.status_code == r3.status_code == 201
        assert r1.json()["patient_id"] == r2.json()["patient_id"]
        assert r2.json()["nhs_number"] == nhs  # stored normalised, without spaces
        assert r3.json()["patient_id"] != r1.json()["patient_id"]

    @pytest.mark.parametrize("role", ["service_staff", "partner"])
    async def test_service_staff_and_partners_may_refer(
        self, referrals_client: httpx.AsyncClient, settings: Settings, role: str
    ) -> None:
        org = new_org("WORK")
        r, _ = await submit(referrals_client, settings, role=role, org=org)
        assert r.status_code == 201, r.text
        assert r.json()["from_org"] == org

    async def test_an_onward_referral_names_an_existing_referral(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        # a GP refers to the pain service, which refers the patient onward to physiotherapy
        ics = new_ics()
        pain = await new_service(settings, referrals_sessions)
        physio = await new_service(settings, referrals_sessions, category="msk_physiotherapy")
        first, _ = await submit(
            referrals_client, settings, ics=ics, to_service_id=pain.id, to_org=pain.org
        )
        assert first.status_code == 201, first.text
        r, _ = await submit(
            referrals_client,
            settings,
            org=pain.org,
            ics=ics,
            role="service_staff",
            source="onward",
            referred_from=first.json()["id"],
            to_service_id=physio.id,
            to_org=None,
        )
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["referred_from"] == first.json()["id"]
        assert (out["from_org"], out["to_org"]) == (pain.org, physio.org)
        assert out["service_category"] == "msk_physiotherapy"

    async def test_an_onward_referral_from_a_parent_the_caller_may_not_see_is_refused(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        ics = new_ics()
        first, _ = await submit(referrals_client, settings, ics=ics)
        assert first.status_code == 201, first.text
        nhs = synthetic_nhs_number()
        # an organisation that is neither the parent's referrer nor its receiver
        r, body = await submit(
            referrals_client,
            settings,
            org=new_org(),
            ics=ics,
            source="onward",
            referred_from=first.json()["id"],
            patient={
                "nhs_number": nhs,
                "given_name": "Alex",
                "family_name": "Synthetic",
                "birth_date": "1970-01-01",
            },
        )
        assert_problem(r, 422, "referred_from")
        assert await referrals_of(referrals_sessions, pseudonymise(nhs, settings)) == []

    async def test_a_clinical_summary_of_exactly_10000_characters_is_accepted(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r, _ = await submit(referrals_client, settings, clinical_summary="x" * 10000)
        assert r.status_code == 201, r.text


class TestTheDirectoryService:
    """A referral is addressed to a directory service the replica knows and that is active;
    the receiving organisation and the category come from the directory."""

    async def test_an_unknown_service_is_a_422_and_creates_nothing(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        unknown = f"svc-unknown-{uuid.uuid4().hex[:8]}"
        r, body = await submit(referrals_client, settings, to_service_id=unknown, to_org=None)
        assert_problem(r, 422, unknown, "directory")
        pid = pseudonymise(body["patient"]["nhs_number"], settings)
        assert await referrals_of(referrals_sessions, pid) == []
        assert await outbox_of(referrals_sessions, pid) == []
        assert await audit_of(referrals_sessions, pid) == []

    async def test_a_temporarily_closed_service_is_a_422(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        [(svc_id, org, _, status)] = [k for k in KNOWN_SERVICES if k[0] == "svc-closed-yoga"]
        assert status == "temporarily closed"
        r, body = await submit(referrals_client, settings, to_service_id=svc_id, to_org=org)
        assert_problem(r, 422, svc_id, "temporarily closed")
        pid = pseudonymise(body["patient"]["nhs_number"], settings)
        assert await referrals_of(referrals_sessions, pid) == []

    @pytest.mark.parametrize("status", ["inactive", "defunct", "temporarily closed"])
    async def test_a_service_that_is_not_active_is_a_422_even_for_a_draft(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        status: str,
    ) -> None:
        svc = await new_service(settings, referrals_sessions, status=status)
        for as_draft in (False, True):
            r, _ = await submit(
                referrals_client, settings, to_service_id=svc.id, to_org=svc.org, as_draft=as_draft
            )
            assert_problem(r, 422, svc.id, status)

    async def test_a_to_org_that_does_not_run_the_service_is_a_422(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        svc = await new_service(settings, referrals_sessions)
        wrong = new_org("PAIN")
        r, body = await submit(referrals_client, settings, to_service_id=svc.id, to_org=wrong)
        assert_problem(r, 422, wrong, svc.org)
        pid = pseudonymise(body["patient"]["nhs_number"], settings)
        assert await referrals_of(referrals_sessions, pid) == []

    async def test_without_to_org_the_directory_names_the_receiving_organisation(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        svc = await new_service(settings, referrals_sessions, category="social_prescribing")
        body = referral_body(to_service_id=svc.id)
        del body["to_org"]
        r = await referrals_client.post(
            "/referrals", json=body, headers=auth(settings, role="clinician", org=new_org())
        )
        assert r.status_code == 201, r.text
        out = r.json()
        assert (out["to_org"], out["service_category"]) == (svc.org, "social_prescribing")
        [ev] = await outbox_of(referrals_sessions, out["patient_id"])
        assert (ev.payload["data"]["to_org"], ev.payload["data"]["service_category"]) == (
            svc.org,
            "social_prescribing",
        )

    async def test_the_client_cannot_choose_the_service_category(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r, _ = await submit(referrals_client, settings, service_category="anything_else")
        assert_problem(r, 422, "service_category")

    async def test_the_category_follows_the_directory_when_it_changes(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        svc = await new_service(settings, referrals_sessions, category="exercise_yoga")
        first, _ = await submit(referrals_client, settings, to_service_id=svc.id, to_org=svc.org)
        await publish_directory_state(
            settings, referrals_sessions, [(svc.id, svc.org, "exercise_pilates", "active")]
        )
        second, _ = await submit(referrals_client, settings, to_service_id=svc.id, to_org=svc.org)
        assert first.json()["service_category"] == "exercise_yoga"
        assert second.json()["service_category"] == "exercise_pilates"


class TestDrafts:
    async def test_a_draft_is_saved_without_an_event(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        org, sub = new_org(), new_user()
        r, _ = await submit(referrals_client, settings, org=org, sub=sub, as_draft=True)
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["state"] == "draft" and out["version"] == 1
        assert out["submitted_at"] is None
        assert out["allowed_actions"] == ["submit", "cancel"]
        assert r.headers["etag"] == 'W/"1"'
        assert await outbox_of(referrals_sessions, out["patient_id"]) == []
        [t] = await transitions_of(referrals_sessions, out["id"])
        assert (t.from_state, t.to_state, t.actor, t.actor_org) == (None, "draft", f"{sub}", org)
        assert t.event_id == ""  # no event was published for it
        [a] = await audit_of(referrals_sessions, out["patient_id"])
        assert (a.action, a.resource_id, a.actor) == ("create", out["id"], f"{sub}")

    async def test_submitting_a_draft_later_publishes_the_submitted_event(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        org, sub = new_org(), new_user()
        r, _ = await submit(referrals_client, settings, org=org, sub=sub, as_draft=True)
        draft = r.json()
        headers = {**auth(settings, role="clinician", org=org, sub=sub), **if_match(1)}
        s = await referrals_client.post(f"/referrals/{draft['id']}/submit", headers=headers)
        assert s.status_code == 200, s.text
        out = s.json()
        assert out["state"] == "submitted" and out["version"] == 2
        assert s.headers["etag"] == 'W/"2"'
        assert out["submitted_at"] is not None
        assert out["created_at"] == draft["created_at"]
        [ev] = await outbox_of(referrals_sessions, draft["patient_id"])
        assert ev.event_type == "uk.waymark.referral.submitted"
        data = ev.payload["data"]
        assert (data["referral_id"], data["state"], data["previous_state"]) == (
            draft["id"],
            "submitted",
            "draft",
        )
        transitions = await transitions_of(referrals_sessions, draft["id"])
        assert [(t.from_state, t.to_state) for t in transitions] == [
            (None, "draft"),
            ("draft", "submitted"),
        ]
        assert transitions[1].event_id == ev.event_id
        assert (transitions[1].actor, transitions[1].actor_org) == (f"{sub}", org)

    async def test_a_draft_to_a_service_that_closed_meanwhile_cannot_be_submitted(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        svc = await new_service(settings, referrals_sessions)
        org = new_org()
        r, _ = await submit(
            referrals_client, settings, org=org, to_service_id=svc.id, to_org=svc.org, as_draft=True
        )
        draft = r.json()
        await publish_directory_state(
            settings, referrals_sessions, [(svc.id, svc.org, svc.category, "inactive")]
        )
        s = await referrals_client.post(
            f"/referrals/{draft['id']}/submit",
            headers={**auth(settings, role="clinician", org=org), **if_match(1)},
        )
        assert_problem(s, 422, svc.id, "inactive")
        [row] = await referrals_of(referrals_sessions, draft["patient_id"])
        assert (row.state, row.version) == ("draft", 1)
        assert await outbox_of(referrals_sessions, draft["patient_id"]) == []


class TestWhatIsWritten:
    async def test_one_referral_one_transition_one_event_one_audit_entry(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        org, sub = new_org(), new_user()
        r, body = await submit(referrals_client, settings, org=org, sub=sub)
        assert r.status_code == 201, r.text
        out = r.json()
        pid = out["patient_id"]

        referrals = await referrals_of(referrals_sessions, pid)
        assert len(referrals) == 1
        row = referrals[0]
        assert row.id == out["id"]
        assert row.nhs_number == body["patient"]["nhs_number"]
        assert row.state == "submitted" and row.version == 1
        assert row.from_org == org and row.ics == "ICS-1"
        assert row.created_by == f"{sub}"

        transitions = await query(
            referrals_sessions,
            "SELECT * FROM referral_transition WHERE referral_id = :r",
            r=out["id"],
        )
        assert len(transitions) == 1
        t = transitions[0]
        assert (t.from_state, t.to_state, t.actor, t.actor_org) == (None, "submitted", sub, org)

        events = await outbox_of(referrals_sessions, pid)
        assert len(events) == 1
        ev = events[0]
        assert ev.topic == settings.topic(REFERRALS)
        assert ev.event_type == "uk.waymark.referral.submitted"
        assert ev.event_id == t.event_id
        payload = ev.payload
        assert payload["specversion"] == "1.0"
        assert payload["id"] == ev.event_id
        assert payload["type"] == "uk.waymark.referral.submitted"
        assert payload["subject"] == pid
        assert payload["source"] == "waymark/referrals"
        assert payload["dataschema"].endswith("uk.waymark.referral.submitted.v1.json")
        data = payload["data"]
        assert data["referral_id"] == out["id"]
        assert (data["from_org"], data["to_org"]) == (org, body["to_org"])
        assert data["reason_codes"] == body["reason_codes"]
        assert (data["state"], data["priority"]) == ("submitted", "routine")

        audit = await audit_of(referrals_sessions, pid)
        assert len(audit) == 1
        a = audit[0]
        assert (a.action, a.actor, a.actor_org, a.actor_roles) == (
            "create",
            f"{sub}",
            org,
            "clinician",
        )
        assert (a.resource_type, a.resource_id) == ("Referral", out["id"])

    async def test_the_event_carries_no_personal_data(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        summary = f"Sciatica since March, very low mood {uuid.uuid4().hex}"
        r, body = await submit(
            referrals_client,
            settings,
            clinical_summary=summary,
            communication_needs=["interpreter: Welsh"],
        )
        assert r.status_code == 201, r.text
        [ev] = await outbox_of(referrals_sessions, r.json()["patient_id"])
        dumped = json.dumps(ev.payload)
        patient = body["patient"]
        for personal in (
            patient["nhs_number"],
            patient["given_name"],
            patient["family_name"],
            patient["birth_date"],
            summary,
            "Sciatica",
            body["from_practitioner"],
            "interpreter: Welsh",
        ):
            assert personal not in dumped, personal
        assert ev.key == r.json()["patient_id"]


class TestIdempotency:
    async def test_a_retry_with_the_same_key_replays_the_first_response(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        headers = auth(settings, role="clinician", org=new_org())
        headers["Idempotency-Key"] = str(uuid.uuid4())
        body = referral_body()
        first = await referrals_client.post("/referrals", json=body, headers=headers)
        second = await referrals_client.post("/referrals", json=body, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert second.headers["location"] == first.headers["location"]
        assert second.headers["etag"] == first.headers["etag"]
        pid = first.json()["patient_id"]
        assert len(await referrals_of(referrals_sessions, pid)) == 1
        assert len(await outbox_of(referrals_sessions, pid)) == 1
        creates = [a for a in await audit_of(referrals_sessions, pid) if a.action == "create"]
        assert len(creates) == 1

    async def test_the_same_key_with_a_different_body_is_a_conflict(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        headers = auth(settings, role="clinician", org=new_org())
        headers["Idempotency-Key"] = str(uuid.uuid4())
        body = referral_body()
        first = await referrals_client.post("/referrals", json=body, headers=headers)
        assert first.status_code == 201
        changed = dict(body, clinical_summary="A different referral entirely.")
        r = await referrals_client.post("/referrals", json=changed, headers=headers)
        assert_problem(r, 409, "Idempotency-Key")
        assert len(await referrals_of(referrals_sessions, first.json()["patient_id"])) == 1

    async def test_concurrent_requests_with_one_key_create_one_referral(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        headers = auth(settings, role="clinician", org=new_org())
        headers["Idempotency-Key"] = str(uuid.uuid4())
        body = referral_body()
        responses = await asyncio.gather(
            *[referrals_client.post("/referrals", json=body, headers=headers) for _ in range(5)]
        )
        assert [x.status_code for x in responses] == [201] * 5, [x.text for x in responses]
        assert len({x.json()["id"] for x in responses}) == 1
        assert sum(x.headers.get("idempotent-replayed") == "true" for x in responses) == 4
        pid = responses[0].json()["patient_id"]
        assert len(await referrals_of(referrals_sessions, pid)) == 1
        assert len(await outbox_of(referrals_sessions, pid)) == 1

    async def test_the_key_belongs_to_the_caller(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        key, org, body = str(uuid.uuid4()), new_org(), referral_body()
        a = await referrals_client.post(
            "/referrals",
            json=body,
            headers={**auth(settings, role="clinician", org=org), "Idempotency-Key": key},
        )
        b = await referrals_client.post(
            "/referrals",
            json=body,
            headers={**auth(settings, role="clinician", org=org), "Idempotency-Key": key},
        )
        assert a.status_code == b.status_code == 201
        assert a.json()["id"] != b.json()["id"]
        assert "idempotent-replayed" not in b.headers
        assert len(await referrals_of(referrals_sessions, a.json()["patient_id"])) == 2

    async def test_a_failed_request_does_not_use_up_its_key(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        headers = {
            **auth(settings, role="clinician", org=new_org()),
            "Idempotency-Key": str(uuid.uuid4()),
        }
        body = referral_body()
        refused = await referrals_client.post(
            "/referrals", json=dict(body, consent_to_referral=False), headers=headers
        )
        assert_problem(refused, 422, "consent_to_referral")
        ok = await referrals_client.post("/referrals", json=body, headers=headers)
        assert ok.status_code == 201, ok.text
        assert "idempotent-replayed" not in ok.headers

    @pytest.mark.parametrize("key", ["k" * 201, "tab\there"], ids=["too-long", "unprintable"])
    async def test_a_malformed_key_is_refused(
        self, referrals_client: httpx.AsyncClient, settings: Settings, key: str
    ) -> None:
        r, _ = await submit(referrals_client, settings, key=key)
        assert_problem(r, 422, "Idempotency-Key")


class TestRollback:
    async def test_a_request_refused_inside_the_handler_leaves_nothing_behind(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        nhs = synthetic_nhs_number()
        body = referral_body(referred_from=str(uuid.uuid4()))
        body["patient"]["nhs_number"] = nhs
        r = await referrals_client.post(
            "/referrals", json=body, headers=auth(settings, role="clinician", org=new_org())
        )
        assert_problem(r, 422, "referred_from")
        pid = pseudonymise(nhs, settings)
        assert await referrals_of(referrals_sessions, pid) == []
        assert await outbox_of(referrals_sessions, pid) == []
        assert await audit_of(referrals_sessions, pid) == []

    async def test_a_failure_after_the_referral_was_flushed_rolls_everything_back(
        self,
        lenient_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        # an organisation code the event schema refuses: the referral row is flushed first,
        # then building the event fails; the transaction must leave no trace
        nhs = synthetic_nhs_number()
        body = referral_body()
        body["patient"]["nhs_number"] = nhs
        r = await lenient_client.post(
            "/referrals",
            json=body,
            headers=auth(settings, role="clinician", org=f"GP_{uuid.uuid4().hex[:8]}"),
        )
        assert r.status_code >= 400
        pid = pseudonymise(nhs, settings)
        assert await referrals_of(referrals_sessions, pid) == []
        assert await outbox_of(referrals_sessions, pid) == []
        assert await audit_of(referrals_sessions, pid) == []

    async def test_an_organisation_code_the_event_cannot_carry_is_refused_not_a_500(
        self, lenient_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r, _ = await submit(lenient_client, settings, org=f"GP_{uuid.uuid4().hex[:8]}")
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON


def _patient(**kw: Any) -> dict[str, Any]:
    p = referral_body()["patient"]
    p.update(kw)
    return p


def _bad_nhs() -> str:
    n = synthetic_nhs_number()
    return n[:9] + str((int(n[9]) + 1) % 10)


def _without(field: str) -> dict[str, Any]:
    body = referral_body()
    del body[field]
    return body


BAD_BODIES: list[tuple[str, Any, str]] = [
    (
        "nhs-number-mod-11",
        lambda: referral_body(patient=_patient(nhs_number=_bad_nhs())),
        "nhs_number",
    ),
    (
        "nhs-number-letters",
        lambda: referral_body(patient=_patient(nhs_number="94347659AB")),
        "nhs_number",
    ),
    (
        "nhs-number-too-short",
        lambda: referral_body(patient=_patient(nhs_number="943476")),
        "nhs_number",
    ),
    (
        "nhs-number-arabic-indic-digits",
        lambda: referral_body(
            patient=_patient(
                nhs_number="\u0669\u0664\u0663\u0664\u0667\u0666\u0665\u0669\u0661\u0669"
            )
        ),
        "nhs_number",
    ),
    ("no-consent", lambda: referral_body(consent_to_referral=False), "consent_to_referral"),
    ("consent-missing", lambda: _without("consent_to_referral"), "consent_to_referral"),
    ("onward-without-origin", lambda: referral_body(source="onward"), "referred_from"),
    ("reason-abc", lambda: referral_body(reason_codes=["abc"]), "reason_codes"),
    ("reason-leading-zero", lambda: referral_body(reason_codes=["0123456"]), "reason_codes"),
    (
        "reason-trailing-newline",
        lambda: referral_body(reason_codes=["279039007\n"]),
        "reason_codes",
    ),
    ("reason-codes-empty", lambda: referral_body(reason_codes=[]), "reason_codes"),
    (
        "nul-in-clinical-summary",
        lambda: referral_body(clinical_summary="Back pain\u0000; DROP TABLE referral"),
        "clinical_summary",
    ),
    (
        "nul-in-given-name",
        lambda: referral_body(patient=_patient(given_name="Al\u0000ex")),
        "given_name",
    ),
    (
        "nul-in-family-name",
        lambda: referral_body(patient=_patient(family_name="\u0000")),
        "family_name",
    ),
    (
        "nul-in-communication-need",
        lambda: referral_body(communication_needs=["BSL\u0000"]),
        "communication_needs",
    ),
    ("nul-in-referred-from", lambda: referral_body(referred_from="ref\u0000x"), "referred_from"),
    (
        "clinical-summary-10001",
        lambda: referral_body(clinical_summary="x" * 10001),
        "clinical_summary",
    ),
    ("clinical-summary-empty", lambda: referral_body(clinical_summary=""), "clinical_summary"),
    ("unknown-field", lambda: referral_body(sneaky_field="x"), "sneaky_field"),
    ("unknown-patient-field", lambda: referral_body(patient=_patient(ethnicity="x")), "ethnicity"),
    (
        "birth-date-not-a-date",
        lambda: referral_body(patient=_patient(birth_date="1972-13-45")),
        "birth_date",
    ),
    (
        "birth-date-words",
        lambda: referral_body(patient=_patient(birth_date="last Tuesday")),
        "birth_date",
    ),
    (
        "birth-date-future",
        lambda: referral_body(
            patient=_patient(birth_date=(date.today() + timedelta(days=1)).isoformat())
        ),
        "birth_date",
    ),
    (
        "birth-date-1899",
        lambda: referral_body(patient=_patient(birth_date="1899-12-31")),
        "birth_date",
    ),
    ("to-org-with-space", lambda: referral_body(to_org="PAIN 1"), "to_org"),
    ("unknown-source", lambda: referral_body(source="hospital"), "source"),
    ("unknown-priority", lambda: referral_body(priority="whenever"), "priority"),
    ("patient-missing", lambda: _without("patient"), "patient"),
]


class TestBadInput:
    @pytest.mark.parametrize(
        "make, word", [(m, w) for _, m, w in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES]
    )
    async def test_a_bad_body_is_a_4xx_problem_naming_the_field(
        self,
        lenient_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        make: Any,
        word: str,
    ) -> None:
        body = make()
        r = await lenient_client.post(
            "/referrals", json=body, headers=auth(settings, role="clinician", org=new_org())
        )
        assert r.status_code != 500, r.text
        assert_problem(r, 422, word)
        patient = body.get("patient") or {}
        for personal in (patient.get("nhs_number"), patient.get("family_name")):
            if personal and len(personal) > 3:
                assert personal not in r.text  # never echo patient data back

    async def test_a_missing_body_is_a_422_problem(
        self, lenient_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await lenient_client.post(
            "/referrals", headers=auth(settings, role="clinician", org=new_org())
        )
        body = assert_problem(r, 422, "body")
        assert body["errors"]

    @pytest.mark.parametrize(
        "content, ctype",
        [
            (b"{not json", "application/json"),
            (b'{"patient": ', "application/json"),
            (b"patient=1", "application/x-www-form-urlencoded"),
            (b"\xff\xfe\x00", "application/json"),
            (b"[]", "application/json"),
            (b'"a string"', "application/json"),
        ],
        ids=["broken", "truncated", "form", "binary", "array", "string"],
    )
    async def test_a_body_that_is_not_a_json_object_is_a_422_problem(
        self, lenient_client: httpx.AsyncClient, settings: Settings, content: bytes, ctype: str
    ) -> None:
        r = await lenient_client.post(
            "/referrals",
            content=content,
            headers={**auth(settings, role="clinician", org=new_org()), "content-type": ctype},
        )
        assert r.status_code in (400, 422), r.text
        assert_problem(r, r.status_code, "body")

    @pytest.mark.parametrize("field", ["clinical_summary", "from_practitioner"])
    async def test_a_lone_surrogate_in_a_text_field_is_a_422_not_a_500(
        self, lenient_client: httpx.AsyncClient, settings: Settings, field: str
    ) -> None:
        # valid JSON (an escaped lone surrogate) that no UTF-8 database text can hold
        body = json.dumps(referral_body(**{field: "Back pain SURROGATE"}))
        content = body.replace("SURROGATE", "\\ud800").encode()
        r = await lenient_client.post(
            "/referrals",
            content=content,
            headers={
                **auth(settings, role="clinician", org=new_org()),
                "content-type": "application/json",
            },
        )
        assert r.status_code != 500, r.text
        assert_problem(r, 422, field)

    @pytest.mark.parametrize(
        "params",
        [{"limit": 10**20}, {"offset": -1}, {"offset": 10**20}, {"limit": 0}, {"limit": "1e3"}],
        ids=["limit-huge", "offset-negative", "offset-huge", "limit-0", "limit-float"],
    )
    async def test_an_integer_beyond_range_in_a_query_is_a_422(
        self, lenient_client: httpx.AsyncClient, settings: Settings, params: dict[str, Any]
    ) -> None:
        for path in ("/referrals", "/worklist"):
            r = await lenient_client.get(
                path, params=params, headers=auth(settings, role="clinician", org=new_org())
            )
            assert_problem(r, 422, next(iter(params)))

    async def test_an_integer_where_text_belongs_is_a_422(
        self, lenient_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        body = referral_body(reason_codes=[10**40], to_service_id=10**40)
        r = await lenient_client.post(
            "/referrals", json=body, headers=auth(settings, role="clinician", org=new_org())
        )
        assert_problem(r, 422, "reason_codes")

    async def test_an_nhs_number_with_a_trailing_newline_is_not_a_second_patient(
        self, lenient_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        nhs = synthetic_nhs_number()
        r = await lenient_client.post(
            "/referrals",
            json=referral_body(patient=_patient(nhs_number=nhs + "\n")),
            headers=auth(settings, role="clinician", org=new_org()),
        )
        if r.status_code == 201:
            assert r.json()["nhs_number"] == nhs
            assert r.json()["patient_id"] == pseudonymise(nhs, settings)
        else:
            assert_problem(r, 422, "nhs_number")

    async def test_bad_input_creates_nothing(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        nhs = synthetic_nhs_number()
        r = await referrals_client.post(
            "/referrals",
            json=referral_body(patient=_patient(nhs_number=nhs), consent_to_referral=False),
            headers=auth(settings, role="clinician", org=new_org()),
        )
        assert r.status_code == 422
        pid = pseudonymise(nhs, settings)
        assert await referrals_of(referrals_sessions, pid) == []
        assert await outbox_of(referrals_sessions, pid) == []


class TestAuthentication:
    async def test_no_token_is_a_401_with_a_bearer_challenge(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        body = referral_body()
        r = await referrals_client.post("/referrals", json=body)
        assert_problem(r, 401, "Bearer")
        assert r.headers["www-authenticate"] == "Bearer"
        pid = pseudonymise(body["patient"]["nhs_number"], settings)
        assert await referrals_of(referrals_sessions, pid) == []

    @pytest.mark.parametrize(
        "header", ["Bearer garbage", "Bearer a.b.c", "Basic Zm9vOmJhcg==", "Bearer "]
    )
    async def test_a_bad_token_is_a_401(
        self, referrals_client: httpx.AsyncClient, header: str
    ) -> None:
        r = await referrals_client.post(
            "/referrals", json=referral_body(), headers={"Authorization": header}
        )
        assert_problem(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"

    async def test_an_expired_token_is_a_401(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        # expired beyond the clock skew the APIs allow (a token a second past `exp` is fine)
        expired = timedelta(seconds=-(settings.oidc_clock_skew_seconds + 60))
        t = mint_token(settings, sub=new_user(), roles=["clinician"], org=new_org(), ttl=expired)
        r = await referrals_client.post(
            "/referrals", json=referral_body(), headers={"Authorization": f"Bearer {t}"}
        )
        assert_problem(r, 401, "expired")

    @pytest.mark.parametrize("role", ["coordinator", "admin", "ics_lead"])
    async def test_roles_that_do_not_refer_get_a_403(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        role: str,
    ) -> None:
        body = referral_body()
        r = await referrals_client.post(
            "/referrals", json=body, headers=auth(settings, role=role, org=new_org())
        )
        assert_problem(r, 403, "clinicians")
        pid = pseudonymise(body["patient"]["nhs_number"], settings)
        assert await referrals_of(referrals_sessions, pid) == []
        assert await audit_of(referrals_sessions, pid) == []

    async def test_reading_without_a_token_is_a_401(
        self, referrals_client: httpx.AsyncClient
    ) -> None:
        r = await referrals_client.get(f"/referrals/{uuid.uuid4()}")
        assert_problem(r, 401)


class TestReadReferral:
    @pytest.fixture(autouse=True)
    def _sessions(self, referrals_sessions: async_sessionmaker) -> None:
        self.sessions = referrals_sessions

    async def _create(
        self, client: httpx.AsyncClient, s: Settings, *, ics: str
    ) -> tuple[dict[str, Any], str, str]:
        org, sub = new_org(), new_user()
        svc = await new_service(s, self.sessions)
        r, _ = await submit(
            client, s, org=org, ics=ics, sub=sub, to_service_id=svc.id, to_org=svc.org
        )
        assert r.status_code == 201, r.text
        assert r.json()["to_org"] == svc.org
        return r.json(), org, sub

    async def test_the_referrer_reads_it_and_the_read_is_audited(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        ics = new_ics()
        created, org, _ = await self._create(referrals_client, settings, ics=ics)
        reader = new_user()
        r = await referrals_client.get(
            f"/referrals/{created['id']}",
            headers=auth(settings, role="clinician", org=org, ics=ics, sub=reader),
        )
        assert r.status_code == 200, r.text
        assert r.json() == created
        assert r.headers["etag"] == 'W/"1"'
        # this reader's reads (the notifications service may also read the message context)
        reads = [
            a
            for a in await audit_of(referrals_sessions, created["patient_id"])
            if a.action == "read" and a.actor_org == org
        ]
        assert len(reads) == 1
        assert (reads[0].actor, reads[0].actor_org) == (f"{reader}", org)
        assert (reads[0].resource_type, reads[0].resource_id) == ("Referral", created["id"])

    async def test_the_receiving_organisation_reads_it(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        ics = new_ics()
        created, _, _ = await self._create(referrals_client, settings, ics=ics)
        r = await referrals_client.get(
            f"/referrals/{created['id']}",
            headers=auth(settings, role="service_staff", org=created["to_org"], ics=ics),
        )
        assert r.status_code == 200, r.text
        assert r.json()["id"] == created["id"]

    @pytest.mark.parametrize("role", ["clinician", "service_staff", "partner"])
    async def test_another_organisation_gets_the_same_404_as_an_unknown_id(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        role: str,
    ) -> None:
        ics = new_ics()
        created, _, _ = await self._create(referrals_client, settings, ics=ics)
        reader_org = new_org()
        headers = auth(settings, role=role, org=reader_org, ics=ics)
        hidden = await referrals_client.get(f"/referrals/{created['id']}", headers=headers)
        unknown_id = str(uuid.uuid4())
        unknown = await referrals_client.get(f"/referrals/{unknown_id}", headers=headers)
        h, u = assert_problem(hidden, 404), assert_problem(unknown, 404)
        assert (h["type"], h["title"]) == (u["type"], u["title"])
        assert h["detail"].replace(created["id"], "ID") == u["detail"].replace(unknown_id, "ID")
        assert created["nhs_number"] not in hidden.text
        # the refused reader left no read (the notifications service, reading the referral's
        # message context for its own referral event, may have; that is not this reader)
        reads = [
            a
            for a in await audit_of(referrals_sessions, created["patient_id"])
            if a.action == "read" and a.actor_org == reader_org
        ]
        assert reads == []

    @pytest.mark.parametrize("role", ["coordinator"])
    async def test_a_coordinator_of_the_same_ics_reads_it(
        self, referrals_client: httpx.AsyncClient, settings: Settings, role: str
    ) -> None:
        ics = new_ics()
        created, _, _ = await self._create(referrals_client, settings, ics=ics)
        r = await referrals_client.get(
            f"/referrals/{created['id']}",
            headers=auth(settings, role=role, org=new_org("ICB"), ics=ics),
        )
        assert r.status_code == 200, r.text

    async def test_a_coordinator_of_another_ics_gets_a_404(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        created, org, _ = await self._create(referrals_client, settings, ics=new_ics())
        for reader_org in (new_org("ICB"), org):
            r = await referrals_client.get(
                f"/referrals/{created['id']}",
                headers=auth(settings, role="coordinator", org=reader_org, ics=new_ics()),
            )
            assert_problem(r, 404)

    async def test_an_unknown_id_is_a_404(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await referrals_client.get(
            f"/referrals/{uuid.uuid4()}", headers=auth(settings, role="clinician", org=new_org())
        )
        assert_problem(r, 404, "no referral")

    async def test_an_id_with_a_nul_byte_is_a_404_not_a_500(
        self, lenient_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await lenient_client.get(
            "/referrals/abc%00def", headers=auth(settings, role="clinician", org=new_org())
        )
        assert r.status_code != 500, r.text
        assert 400 <= r.status_code < 500


class TestWorklist:
    async def test_urgent_first_then_longest_waiting_filtered_by_state(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        svc = await new_service(settings, referrals_sessions)
        made = []
        for priority in ("routine", "urgent", "routine", "routine", "urgent"):
            r, _ = await submit(
                referrals_client, settings, to_service_id=svc.id, to_org=svc.org, priority=priority
            )
            assert r.status_code == 201, r.text
            made.append(r.json())
        r1, u1, r2, r3, u2 = made
        staff = auth(settings, role="service_staff", org=svc.org)
        accepted = await referrals_client.post(
            f"/referrals/{r3['id']}/accept", headers={**staff, **if_match(1)}
        )
        assert accepted.status_code == 200, accepted.text

        w = (await referrals_client.get("/worklist", headers=staff)).json()
        assert [i["id"] for i in w["items"]] == [u1["id"], u2["id"], r1["id"], r2["id"]]
        assert (w["total"], w["limit"], w["offset"]) == (4, 50, 0)
        first = w["items"][0]
        assert (first["nhs_number"], first["from_org"], first["state"]) == (
            u1["nhs_number"],
            u1["from_org"],
            "submitted",
        )
        assert first["service_category"] == svc.category
        assert all(i["waiting_days"] == 0 for i in w["items"])

        only_accepted = (
            await referrals_client.get("/worklist", params={"state": "accepted"}, headers=staff)
        ).json()
        assert [i["id"] for i in only_accepted["items"]] == [r3["id"]]
        both = (
            await referrals_client.get(
                "/worklist",
                headers=staff,
                params={"state": ["submitted", "accepted"], "limit": 2, "offset": 2},
            )
        ).json()
        assert both["total"] == 5
        assert [i["id"] for i in both["items"]] == [r1["id"], r2["id"]]

    async def test_the_referrer_does_not_see_its_own_referrals_on_its_worklist(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = new_org()
        r, _ = await submit(referrals_client, settings, org=org)
        assert r.status_code == 201
        w = (
            await referrals_client.get(
                "/worklist", headers=auth(settings, role="clinician", org=org)
            )
        ).json()
        assert w == {"items": [], "total": 0, "limit": 50, "offset": 0}
