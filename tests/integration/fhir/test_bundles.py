"""POST /fhir with transaction and batch Bundles, on the real database: a transaction records
all its contacts or none; a batch answers each entry on its own."""

from __future__ import annotations

import json
import uuid

from shared.fhir import NHS_NUMBER_SYSTEM
from tests.helpers import synthetic_nhs_number
from tests.integration.fhir.support import appointment, bundle, encounter, entry
from tests.integration.fhir.test_api import expressions, outcome, text_of
from tests.integration.test_handlers import rows


async def contacts(sessions, source_id: str) -> int:  # type: ignore[no-untyped-def]
    [(n,)] = await rows(
        sessions, "SELECT count(*) FROM encounter WHERE source_system = :s", s=source_id
    )
    return int(n)


def service_request(nhs: str) -> dict:  # type: ignore[type-arg]
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs}},
    }


class TestTransaction:
    async def test_every_entry_is_recorded_and_answered_in_order(
        self, integration_client, integration_sessions, fhir_sender
    ) -> None:
        sender = await fhir_sender(org_code="A81001")
        nhs = synthetic_nhs_number()
        patient = {
            "resourceType": "Patient",
            "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs}],
        }
        patient_entry = entry(patient)
        first = encounter(nhs, subject={"reference": patient_entry["fullUrl"]})
        raw = bundle("transaction", first, appointment(nhs))
        raw["entry"].insert(0, patient_entry)
        r = await integration_client.post("/fhir", content=json.dumps(raw), headers=sender.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["resourceType"] == "Bundle" and body["type"] == "transaction-response"
        statuses = [e["response"]["status"] for e in body["entry"]]
        assert statuses == ["200 OK", "201 Created", "201 Created"]
        for e in body["entry"][1:]:
            assert e["response"]["location"].startswith("Encounter/")
            assert e["response"]["location"].endswith("/_history/1")
        assert await contacts(integration_sessions, sender.source.id) == 2
        assert nhs not in r.text
        again = await integration_client.post(
            "/fhir", content=json.dumps(raw), headers=sender.headers
        )
        assert [e["response"]["status"] for e in again.json()["entry"]][1:] == ["200 OK"] * 2
        assert await contacts(integration_sessions, sender.source.id) == 2

    async def test_one_bad_entry_records_nothing(
        self, integration_client, integration_sessions, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        nhs = synthetic_nhs_number()
        raw = bundle("transaction", encounter(nhs), encounter("9434765918"))
        r = await integration_client.post("/fhir", content=json.dumps(raw), headers=sender.headers)
        assert "check digit" in text_of(outcome(r, 422))
        assert await contacts(integration_sessions, sender.source.id) == 0

    async def test_a_structurally_invalid_entry_is_named_by_its_fhirpath(
        self, integration_client, integration_sessions, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        raw = bundle("transaction", encounter(synthetic_nhs_number(), status=7))
        r = await integration_client.post("/fhir", content=json.dumps(raw), headers=sender.headers)
        assert "Bundle.entry[0].resource.status" in expressions(outcome(r, 422))

    async def test_a_mapping_problem_is_named_at_its_entry(
        self, integration_client, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        nhs = synthetic_nhs_number()
        late = encounter(nhs, period={"start": "2026-01-02"})
        raw = bundle("transaction", encounter(nhs), late)
        r = await integration_client.post("/fhir", content=json.dumps(raw), headers=sender.headers)
        assert "Bundle.entry[1].resource.period.start" in expressions(outcome(r, 422))

    async def test_a_service_request_is_sent_to_the_referrals_service(
        self, integration_client, integration_sessions, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        nhs = synthetic_nhs_number()
        raw = bundle("transaction", encounter(nhs), service_request(nhs))
        r = await integration_client.post("/fhir", content=json.dumps(raw), headers=sender.headers)
        body = outcome(r, 422)
        assert "referrals service" in text_of(body)
        assert "Bundle.entry[1].resource.resourceType" in expressions(body)
        assert await contacts(integration_sessions, sender.source.id) == 0

    async def test_an_entry_without_its_request_is_refused(
        self, integration_client, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        raw = bundle("transaction", encounter(synthetic_nhs_number()))
        del raw["entry"][0]["request"]
        r = await integration_client.post("/fhir", content=json.dumps(raw), headers=sender.headers)
        assert "Bundle.entry[0].request" in expressions(outcome(r, 422))


class TestBatch:
    async def test_each_entry_has_its_own_outcome(
        self, integration_client, integration_sessions, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        nhs = synthetic_nhs_number()
        good = encounter(nhs)
        raw = bundle(
            "batch",
            good,
            encounter(nhs, status="done"),
            service_request(nhs),
            {k: v for k, v in encounter(nhs).items() if k != "subject"},
        )
        r = await integration_client.post("/fhir", content=json.dumps(raw), headers=sender.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["type"] == "batch-response"
        statuses = [e["response"]["status"] for e in body["entry"]]
        assert statuses == ["201 Created"] + ["422 Unprocessable Entity"] * 3
        outcomes = [e["response"].get("outcome") for e in body["entry"]]
        assert outcomes[0] is None
        assert "Encounter status" in text_of(outcomes[1])
        assert "Bundle.entry[1].resource.status" in expressions(outcomes[1])
        assert "referrals service" in text_of(outcomes[2])
        assert "Bundle.entry[3].resource.subject" in expressions(outcomes[3])
        assert await contacts(integration_sessions, sender.source.id) == 1
        [row] = await rows(
            integration_sessions,
            "SELECT source_ref FROM encounter WHERE source_system = :s",
            s=sender.source.id,
        )
        assert row.source_ref.endswith(good["identifier"][0]["value"])

    async def test_a_batch_entry_sent_again_changes_nothing(
        self, integration_client, integration_sessions, fhir_sender
    ) -> None:
        sender = await fhir_sender()
        raw = bundle("batch", encounter(synthetic_nhs_number()))
        first = await integration_client.post(
            "/fhir", content=json.dumps(raw), headers=sender.headers
        )
        again = await integration_client.post(
            "/fhir", content=json.dumps(raw), headers=sender.headers
        )
        assert first.json()["entry"][0]["response"]["status"] == "201 Created"
        assert again.json()["entry"][0]["response"]["status"] == "200 OK"
        assert await contacts(integration_sessions, sender.source.id) == 1


BAD_BUNDLES = [
    ("not a Bundle", encounter("9434765919"), "Bundle", "expected a Bundle"),
    ("a searchset", {"resourceType": "Bundle", "type": "searchset"}, "Bundle.type", "transaction"),
    (
        "a notification at the wrong address",
        {"resourceType": "Bundle", "type": "history"},
        "Bundle.type",
        "subscription-notification",
    ),
    ("no entries", {"resourceType": "Bundle", "type": "batch"}, "Bundle.entry", "no entries"),
    (
        "an entry that is not an object",
        {"resourceType": "Bundle", "type": "batch", "entry": [7]},
        "Bundle.entry[0]",
        "",
    ),
    (
        "a resource type FHIR does not have",
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": {"resourceType": "Wibble"}, "request": {"method": "POST", "url": "W"}}
            ],
        },
        "Bundle.entry[0].resource.resourceType",
        "not a FHIR R4 resource type",
    ),
]


async def test_bundles_waymark_does_not_take_are_refused_saying_why(
    integration_client, fhir_sender
) -> None:
    sender = await fhir_sender()
    for name, raw, path, words in BAD_BUNDLES:
        r = await integration_client.post("/fhir", content=json.dumps(raw), headers=sender.headers)
        body = outcome(r, 422)
        assert any(e.startswith(path) for e in expressions(body)), (name, body)
        assert words in text_of(body), (name, body)


async def test_the_bundle_route_needs_a_registered_source(integration_client, infra) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import auth

    headers = auth(infra, role="partner", org="RX1", ics=infra.ics, sub=f"x-{uuid.uuid4().hex}")
    raw = bundle("batch", encounter(synthetic_nhs_number()))
    r = await integration_client.post("/fhir", json=raw, headers=headers)
    outcome(r, 403)


async def test_the_same_transaction_sent_twice_at_once_records_each_contact_once(
    integration_client, integration_sessions, fhir_sender
) -> None:
    import asyncio

    sender = await fhir_sender()
    nhs = synthetic_nhs_number()
    raw = json.dumps(bundle("transaction", encounter(nhs), encounter(nhs), appointment(nhs)))
    answers = await asyncio.gather(
        *(integration_client.post("/fhir", content=raw, headers=sender.headers) for _ in range(4))
    )
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    created = [
        [e["response"]["status"] for e in r.json()["entry"]].count("201 Created") for r in answers
    ]
    assert sorted(created) == [0, 0, 0, 3]
    assert await contacts(integration_sessions, sender.source.id) == 3
    [(events,)] = await rows(
        integration_sessions,
        "SELECT count(*) FROM outbox WHERE payload->'data'->>'source_system' = :s",
        s=sender.source.id,
    )
    assert events == 3


async def test_a_bundle_over_the_body_limit_is_a_413_operation_outcome(
    integration_client, infra, fhir_sender
) -> None:  # type: ignore[no-untyped-def]
    sender = await fhir_sender()
    nhs = synthetic_nhs_number()
    many = [encounter(nhs) for _ in range(infra.max_body_bytes // 400 + 10)]
    raw = json.dumps(bundle("batch", *many))
    assert len(raw) > infra.max_body_bytes
    r = await integration_client.post("/fhir", content=raw, headers=sender.headers)
    body = outcome(r, 413)
    assert body["issue"][0]["severity"] == "error"


async def test_a_refused_transaction_is_kept_whole_and_redriven_through_this_channel(
    integration_client, integration_sessions, infra, fhir_sender
) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import auth

    sender = await fhir_sender()
    nhs = synthetic_nhs_number()
    raw = bundle("transaction", encounter(nhs), encounter(nhs, period={"start": "2026-01-02"}))
    r = await integration_client.post("/fhir", content=json.dumps(raw), headers=sender.headers)
    outcome(r, 422)
    [letter] = await rows(
        integration_sessions,
        "SELECT id, payload, control_id FROM dead_letter WHERE source_system = :s",
        s=sender.source.id,
    )
    assert json.loads(letter.payload) == raw and letter.control_id.startswith("Bundle/")
    admin = auth(infra, role="admin", org="ICS-ADMIN", ics=infra.ics)
    r = await integration_client.post(f"/dead-letters/{letter.id}/redrive", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["ack_code"] == "AE"
    assert "Bundle.entry[1].resource.period.start" in r.json()["detail"]
    assert await contacts(integration_sessions, sender.source.id) == 0
