"""POST /fhir/Encounter and /fhir/Appointment of the integration API, in-process on the real
database: what is stored, what is answered (a minimal Encounter, never the patient), the event
staged (codes only), idempotency, and every kind of bad input answered with an
OperationOutcome naming the FHIRPath of the problem."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from shared.pseudonym import pseudonymise
from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import synthetic_nhs_number
from tests.integration.fhir.support import (
    BACK_PAIN,
    appointment,
    changed,
    contained_patient,
    encounter,
)
from tests.integration.test_handlers import rows

FHIR = "application/fhir+json"


def outcome(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(FHIR), r.headers["content-type"]
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body


def expressions(body: dict[str, Any]) -> list[str]:
    return [e for i in body["issue"] for e in i.get("expression", [])]


def text_of(body: dict[str, Any]) -> str:
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


async def post(client: httpx.AsyncClient, sender: Any, body: Any, kind: str = "Encounter"):  # type: ignore[no-untyped-def]
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await client.post(f"/fhir/{kind}", content=content, headers=sender.headers)


class TestRecording:
    async def test_an_encounter_is_recorded_and_answered_without_the_patient(
        self, integration_client, integration_sessions, infra: Settings, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        nhs = synthetic_nhs_number()
        resource = encounter(nhs)
        visit = resource["identifier"][0]["value"]
        r = await post(integration_client, sender, resource)
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith(FHIR)
        body = r.json()
        assert body["resourceType"] == "Encounter" and body["status"] == "finished"
        assert body["class"]["code"] == "EMER" and body["meta"]["versionId"] == "1"
        assert r.headers["location"] == f"http://integration/fhir/Encounter/{body['id']}/_history/1"
        assert r.headers["etag"] == 'W/"1"'
        assert nhs not in r.text and visit not in r.text and "subject" not in body
        [row] = await rows(
            integration_sessions,
            "SELECT * FROM encounter WHERE id = :i",
            i=uuid.UUID(body["id"]),
        )
        assert row.patient_id == pseudonymise(nhs, infra)
        assert row.source_ref == f"https://pas.example.org/Id/visit|{visit}"
        assert (row.contact_kind, row.planned, row.status) == ("ae_attendance", False, "finished")
        assert row.chief_complaint == BACK_PAIN and row.channel == "fhir"
        assert row.source_org == "RX1" and row.source_system == sender.source.id

    async def test_the_event_carries_codes_only(
        self, integration_client, integration_sessions, infra: Settings, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        nhs = synthetic_nhs_number()
        resource = encounter(nhs)
        r = await post(integration_client, sender, resource)
        assert r.status_code == 201, r.text
        [event] = await rows(
            integration_sessions,
            "SELECT topic, key, payload FROM outbox WHERE payload->'data'->>'encounter_id' = :i",
            i=r.json()["id"],
        )
        assert event.topic == infra.topic("waymark.encounters.v1")
        data = event.payload["data"]
        assert data["channel"] == "fhir" and data["chief_complaint"] == BACK_PAIN
        assert data["contact_kind"] == "ae_attendance" and data["source_org"] == "RX1"
        assert event.payload["subject"] == pseudonymise(nhs, infra)
        dumped = json.dumps(event.payload)
        assert nhs not in dumped and resource["identifier"][0]["value"] not in dumped

    async def test_the_recording_is_audited_as_the_source(
        self, integration_client, integration_sessions, infra: Settings, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        nhs = synthetic_nhs_number()
        r = await post(integration_client, sender, encounter(nhs))
        assert r.status_code == 201, r.text
        [entry] = await rows(
            integration_sessions,
            "SELECT actor, action, resource_type, patient_id FROM audit_log WHERE resource_id = :i",
            i=r.json()["id"],
        )
        assert entry.actor == f"source:{sender.source.id}"
        assert (entry.action, entry.resource_type) == ("contact-recorded", "Encounter")
        assert entry.patient_id == pseudonymise(nhs, infra)

    async def test_the_same_encounter_twice_is_one_contact(
        self, integration_client, integration_sessions, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        resource = encounter(synthetic_nhs_number())
        first = await post(integration_client, sender, resource)
        again = await post(integration_client, sender, resource)
        assert (first.status_code, again.status_code) == (201, 200), again.text
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["location"] == first.headers["location"]
        [(contacts, events)] = await rows(
            integration_sessions,
            "SELECT count(*), (SELECT count(*) FROM outbox "
            "WHERE payload->'data'->>'encounter_id' = :i) FROM encounter WHERE id = :u",
            i=first.json()["id"],
            u=uuid.UUID(first.json()["id"]),
        )
        assert (contacts, events) == (1, 1)

    async def test_a_changed_encounter_is_a_new_revision_of_the_same_contact(
        self, integration_client, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        booked = encounter(synthetic_nhs_number(), status="in-progress")
        booked["period"] = {"start": booked["period"]["start"]}
        first = await post(integration_client, sender, booked)
        done = changed(booked, status="finished")
        done["period"] = {**booked["period"], "end": datetime.now(UTC).isoformat()}
        second = await post(integration_client, sender, done)
        assert (first.status_code, second.status_code) == (201, 201), second.text
        assert second.json()["id"] == first.json()["id"]
        assert second.json()["meta"]["versionId"] == "2"
        assert second.json()["status"] == "finished" and "end" in second.json()["period"]

    async def test_a_version_id_sent_again_with_other_content_is_a_conflict(
        self, integration_client, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        resource = encounter(synthetic_nhs_number(), meta={"versionId": "3"})
        assert (await post(integration_client, sender, resource)).status_code == 201
        other = changed(resource, status="cancelled")
        body = outcome(await post(integration_client, sender, other), 409)
        assert "used before" in text_of(body)

    async def test_a_contained_patient_names_the_person(
        self, integration_client, integration_sessions, infra: Settings, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        nhs = synthetic_nhs_number()
        resource = encounter(nhs)
        del resource["subject"]
        resource.update(contained_patient(nhs))
        r = await post(integration_client, sender, resource)
        assert r.status_code == 201, r.text
        [row] = await rows(
            integration_sessions,
            "SELECT patient_id FROM encounter WHERE id = :i",
            i=uuid.UUID(r.json()["id"]),
        )
        assert row.patient_id == pseudonymise(nhs, infra)

    async def test_an_appointment_at_a_gp_practice_is_a_gp_appointment(
        self, integration_client, integration_sessions, fhir_sender
    ) -> None:
        sender = await fhir_sender(org_code="A81001")
        r = await post(
            integration_client, sender, appointment(synthetic_nhs_number()), "Appointment"
        )
        assert r.status_code == 201, r.text
        assert r.json()["resourceType"] == "Encounter" and r.json()["status"] == "planned"
        [row] = await rows(
            integration_sessions,
            "SELECT contact_kind, planned, status, source_org FROM encounter WHERE id = :i",
            i=uuid.UUID(r.json()["id"]),
        )
        assert tuple(row) == ("gp_appointment", True, "booked", "A81001")

    async def test_a_kind_coding_and_a_priority_say_what_the_class_cannot(
        self, integration_client, integration_sessions, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        resource = encounter(
            synthetic_nhs_number(),
            **{
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "HH",
                },
                "serviceType": {
                    "coding": [
                        {
                            "system": "https://waymark.nhs.example/fhir/CodeSystem/contact-kind",
                            "code": "crisis_team",
                        }
                    ]
                },
            },
        )
        r = await post(integration_client, sender, resource)
        assert r.status_code == 201, r.text
        [row] = await rows(
            integration_sessions,
            "SELECT contact_kind, planned FROM encounter WHERE id = :i",
            i=uuid.UUID(r.json()["id"]),
        )
        assert tuple(row) == ("crisis_team", False)


NHS = "9434765919"
SOON = (datetime.now(UTC) + timedelta(days=1)).isoformat()
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

#: (name, what is sent, status, the FHIRPath the outcome must name or None, words it must use)
BAD: list[tuple[str, Any, int, str | None, str]] = [
    ("not JSON", b"{not json", 400, None, "not JSON"),
    ("not UTF-8", b"\xff\xfe{}", 400, None, "UTF-8"),
    ("a JSON array", [1, 2], 422, "Resource", "JSON object"),
    (
        "another resource type",
        {"resourceType": "Observation"},
        422,
        "Observation.resourceType",
        "expected Encounter",
    ),
    (
        "no class",
        {k: v for k, v in encounter(NHS).items() if k != "class"},
        422,
        "Encounter.class",
        "required",
    ),
    (
        "a made-up element",
        encounter(NHS, colour="blue"),
        422,
        "Encounter.colour",
        "not part of FHIR",
    ),
    (
        "a malformed time",
        encounter(NHS, period={"start": "yesterday"}),
        422,
        "Encounter.period.start",
        "DateTime",
    ),
    (
        "a status FHIR does not have",
        encounter(NHS, status="done"),
        422,
        "Encounter.status",
        "not an R4 Encounter status",
    ),
    ("status unknown", encounter(NHS, status="unknown"), 422, "Encounter.status", "unknown"),
    (
        "a number where a string goes",
        encounter(NHS, reasonCode=[{"coding": [{"system": 7}]}]),
        422,
        "Encounter.reasonCode[0].coding[0].system",
        "string",
    ),
    (
        "no patient",
        {k: v for k, v in encounter(NHS).items() if k != "subject"},
        422,
        "Encounter.subject",
        "NHS number",
    ),
    ("an NHS number failing its check digit", encounter("9434765918"), 422, None, "check digit"),
    (
        "a subject by a reference Waymark cannot follow",
        encounter(NHS, subject={"reference": "Patient/123"}),
        422,
        "Encounter.subject",
        "identifier",
    ),
    (
        "a contained Patient without an NHS number",
        encounter(
            NHS, contained=[{"resourceType": "Patient", "id": "p"}], subject={"reference": "#p"}
        ),
        422,
        "Encounter.subject",
        "nhs-number",
    ),
    (
        "a start without a time",
        encounter(NHS, period={"start": "2026-01-02"}),
        422,
        "Encounter.period.start",
        "time zone",
    ),
    (
        "no start",
        encounter(NHS, period={"end": "2026-01-02T10:00:00Z"}),
        422,
        "Encounter.period.start",
        "required",
    ),
    ("a start in the future", encounter(NHS, period={"start": SOON}), 422, None, "future"),
    (
        "no identifier and no id",
        {k: v for k, v in encounter(NHS).items() if k != "identifier"},
        422,
        "Encounter.identifier",
        "identifier",
    ),
    (
        "a class that does not say the kind",
        encounter(NHS, **{"class": {"system": ACT, "code": "HH"}}),
        422,
        "Encounter.class",
        "contact-kind",
    ),
    (
        "a kind Waymark does not have",
        encounter(
            NHS,
            serviceType={
                "coding": [
                    {
                        "system": "https://waymark.nhs.example/fhir/CodeSystem/contact-kind",
                        "code": "dentist",
                    }
                ]
            },
        ),
        422,
        "Encounter.serviceType",
        "not a contact kind",
    ),
    (
        "a SNOMED code that is not one",
        encounter(
            NHS,
            reasonCode=[{"coding": [{"system": "http://snomed.info/sct", "code": "back pain"}]}],
        ),
        422,
        None,
        "SNOMED",
    ),
]


@pytest.mark.parametrize(("name", "sent", "status", "path", "words"), BAD, ids=[b[0] for b in BAD])
async def test_bad_input_is_refused_with_an_operation_outcome_saying_where(
    integration_client, integration_sessions, fhir_sender, name, sent, status, path, words
) -> None:
    sender = await fhir_sender()
    body = outcome(await post(integration_client, sender, sent), status)
    assert words.lower() in text_of(body).lower(), body
    if path is not None:
        assert path in expressions(body), body
    [(count,)] = await rows(
        integration_sessions,
        "SELECT count(*) FROM encounter WHERE source_system = :s",
        s=sender.source.id,
    )
    assert count == 0


BAD_APPOINTMENTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("proposed", appointment(NHS, status="proposed"), "Appointment.status", "not booked yet"),
    (
        "a status FHIR does not have",
        appointment(NHS, status="done"),
        "Appointment.status",
        "not an R4 Appointment status",
    ),
    (
        "no patient",
        appointment(NHS, participant=[{"actor": {"display": "Dr Example"}, "status": "accepted"}]),
        "Appointment.participant",
        "patient",
    ),
    (
        "no start",
        {k: v for k, v in appointment(NHS).items() if k != "start"},
        "Appointment.start",
        "required",
    ),
]


@pytest.mark.parametrize(
    ("name", "sent", "path", "words"), BAD_APPOINTMENTS, ids=[b[0] for b in BAD_APPOINTMENTS]
)
async def test_bad_appointments_are_refused_saying_where(
    integration_client, fhir_sender, name, sent, path, words
) -> None:
    sender = await fhir_sender()
    body = outcome(await post(integration_client, sender, sent, "Appointment"), 422)
    assert words in text_of(body) and path in expressions(body), body


async def test_an_unmappable_encounter_is_kept_as_a_dead_letter_and_can_be_redriven(
    integration_client, integration_sessions, infra: Settings, fhir_sender
) -> None:
    sender = await fhir_sender()
    resource = {k: v for k, v in encounter(NHS).items() if k != "subject"}
    outcome(await post(integration_client, sender, resource), 422)
    [letter] = await rows(
        integration_sessions,
        "SELECT id, channel, reason, control_id FROM dead_letter WHERE source_system = :s",
        s=sender.source.id,
    )
    assert letter.channel == "fhir" and "Encounter.subject" in letter.reason
    assert letter.control_id.startswith("Encounter/https://pas.example.org/Id/visit|")
    admin = auth(infra, role="admin", org="ICS-ADMIN", ics=infra.ics)
    r = await integration_client.post(f"/dead-letters/{letter.id}/redrive", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["ack_code"] == "AE" and "Encounter.subject" in r.json()["detail"]
    [entry] = await rows(
        integration_sessions,
        "SELECT actor, action, detail FROM audit_log WHERE resource_id = :i",
        i=str(letter.id),
    )
    assert entry.action == "dead-letter-redriven" and entry.detail.startswith("AE")
    assert (
        entry.actor
        == jwt.decode(admin["Authorization"][7:], options={"verify_signature": False})["sub"]
    )


async def test_a_discarded_dead_letter_is_audited(
    integration_client, integration_sessions, infra: Settings, fhir_sender
) -> None:
    sender = await fhir_sender()
    outcome(
        await post(integration_client, sender, encounter(NHS, period={"start": "2026-01-02"})), 422
    )
    [letter] = await rows(
        integration_sessions,
        "SELECT id FROM dead_letter WHERE source_system = :s AND status = 'open'",
        s=sender.source.id,
    )
    sub = f"ops-{uuid.uuid4().hex[:8]}"
    admin = auth(infra, role="admin", org="ICS-ADMIN", ics=infra.ics, sub=sub)
    r = await integration_client.post(f"/dead-letters/{letter.id}/discard", headers=admin)
    assert r.status_code == 204, r.text
    [entry] = await rows(
        integration_sessions,
        "SELECT actor, action FROM audit_log WHERE resource_id = :i",
        i=str(letter.id),
    )
    assert (entry.actor, entry.action) == (sub, "dead-letter-discarded")
    again = await integration_client.post(f"/dead-letters/{letter.id}/discard", headers=admin)
    assert again.status_code == 404


async def test_every_fhir_route_audits_each_contact_it_records(
    integration_client, integration_sessions, infra: Settings, fhir_sender
) -> None:
    sender = await fhir_sender()
    nhs = synthetic_nhs_number()
    from tests.integration.fhir.support import bundle
    from tests.integration.fhir.test_notifications import recordable

    sent = [
        ("/fhir/Encounter", encounter(nhs)),
        ("/fhir/Appointment", appointment(nhs)),
        ("/fhir", bundle("transaction", encounter(nhs), encounter(nhs))),
        ("/fhir", bundle("batch", encounter(nhs))),
        ("/fhir/subscription-notification", recordable(nhs)),
    ]
    for route, body in sent:
        r = await integration_client.post(route, content=json.dumps(body), headers=sender.headers)
        assert r.status_code in (200, 201), (route, r.text)
    recorded = await rows(
        integration_sessions,
        "SELECT e.id, a.actor, a.action, a.patient_id FROM encounter e "
        "LEFT JOIN audit_log a ON a.resource_id = e.id::text WHERE e.source_system = :s",
        s=sender.source.id,
    )
    assert len(recorded) == 6
    for row in recorded:
        assert row.actor == f"source:{sender.source.id}", row
        assert row.action == "contact-recorded" and row.patient_id == pseudonymise(nhs, infra)


class TestWhoMaySend:
    async def test_a_client_that_is_not_a_registered_source_is_refused(
        self, integration_client, infra: Settings
    ) -> None:
        headers = auth(infra, role="partner", org="RX1", ics=infra.ics, sub="nobody-registered")
        r = await integration_client.post("/fhir/Encounter", json=encounter(NHS), headers=headers)
        assert "not registered" in text_of(outcome(r, 403))

    async def test_a_token_of_another_organisation_is_refused(
        self, integration_client, infra: Settings, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        headers = auth(infra, role="partner", org="RX9", ics=infra.ics, sub=sender.source.client_id)
        r = await integration_client.post("/fhir/Encounter", json=encounter(NHS), headers=headers)
        assert "organisation" in text_of(outcome(r, 403))

    async def test_a_switched_off_source_is_refused(self, integration_client, fhir_sender) -> None:
        sender = await fhir_sender(active=False)
        r = await post(integration_client, sender, encounter(NHS))
        assert "not registered" in text_of(outcome(r, 403))

    @pytest.mark.parametrize("role", ["clinician", "coordinator", "admin", "service"])
    async def test_other_roles_are_refused(
        self, integration_client, infra: Settings, fhir_sender, role: str
    ) -> None:
        sender = await fhir_sender()
        headers = auth(infra, role=role, org="RX1", ics=infra.ics, sub=sender.source.client_id)
        r = await integration_client.post("/fhir/Encounter", json=encounter(NHS), headers=headers)
        assert "partner" in text_of(outcome(r, 403))

    async def test_no_token_is_a_401_operation_outcome(self, integration_client) -> None:
        r = await integration_client.post("/fhir/Encounter", json=encounter(NHS))
        assert outcome(r, 401)["issue"][0]["code"] == "login"


class TestReadingBack:
    async def test_the_location_reads_back_the_contact_and_the_read_is_audited(
        self, integration_client, integration_sessions, infra: Settings, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        nhs = synthetic_nhs_number()
        created = await post(integration_client, sender, encounter(nhs))
        assert created.status_code == 201, created.text
        r = await integration_client.get(created.headers["location"], headers=sender.headers)
        assert r.status_code == 200, r.text
        assert r.json() == created.json() and r.headers["etag"] == 'W/"1"'
        latest = await integration_client.get(
            f"/fhir/Encounter/{created.json()['id']}", headers=sender.headers
        )
        assert latest.json() == created.json() and nhs not in latest.text
        reads = await rows(
            integration_sessions,
            "SELECT actor, action, patient_id FROM audit_log WHERE resource_id = :i "
            "AND action = 'read'",
            i=created.json()["id"],
        )
        assert len(reads) == 2
        assert {(x.actor, x.patient_id) for x in reads} == {
            (sender.source.client_id, pseudonymise(nhs, infra))
        }

    async def test_an_older_revision_or_another_sources_contact_is_not_found(
        self, integration_client, fhir_sender
    ) -> None:
        sender, other = await fhir_sender(), await fhir_sender()
        resource = encounter(synthetic_nhs_number())
        first = await post(integration_client, sender, resource)
        await post(integration_client, sender, changed(resource, status="cancelled"))
        old = await integration_client.get(first.headers["location"], headers=sender.headers)
        assert "latest revision" in text_of(outcome(old, 404))
        theirs = await integration_client.get(
            f"/fhir/Encounter/{first.json()['id']}", headers=other.headers
        )
        outcome(theirs, 404)
        nonsense = await integration_client.get(
            "/fhir/Encounter/not-a-uuid", headers=sender.headers
        )
        outcome(nonsense, 404)
