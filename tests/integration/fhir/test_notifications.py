"""POST /fhir/subscription-notification: topic-based Subscription notifications in the shape of
the subscriptions backport IG, its own published examples included (fixtures/backport)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from shared.fhir import NHS_NUMBER_SYSTEM
from tests.helpers import synthetic_nhs_number
from tests.integration.fhir.support import when
from tests.integration.fhir.test_api import expressions, outcome, text_of
from tests.integration.test_handlers import rows

EXAMPLES = Path(__file__).parent / "fixtures" / "backport"
KIND_SYSTEM = "https://waymark.nhs.example/fhir/CodeSystem/contact-kind"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"Bundle-r4-notification-{name}.json").read_text())


async def notify(client, sender, body: Any):  # type: ignore[no-untyped-def]
    return await client.post(
        "/fhir/subscription-notification", content=json.dumps(body), headers=sender.headers
    )


async def contacts(sessions, source_id: str) -> int:  # type: ignore[no-untyped-def]
    [(n,)] = await rows(
        sessions, "SELECT count(*) FROM encounter WHERE source_system = :s", s=source_id
    )
    return int(n)


def recordable(nhs: str) -> dict[str, Any]:
    """The IG's multi-resource example with what Waymark needs added: the Patient's NHS
    number, the Encounter's start, and its kind (class VR alone does not say it)."""
    raw = example("multi-resource")
    enc, patient = raw["entry"][1]["resource"], raw["entry"][2]["resource"]
    patient["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": nhs}]
    enc["period"] = {"start": when(1)}
    enc["serviceType"] = {"coding": [{"system": KIND_SYSTEM, "code": "nhs_111"}]}
    return raw


async def test_the_ig_handshake_and_heartbeat_are_acknowledged_with_no_effect(
    integration_client, integration_sessions, fhir_sender
) -> None:
    sender = await fhir_sender()
    for name in ("handshake", "heartbeat"):
        r = await notify(integration_client, sender, example(name))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["issue"][0]["severity"] == "information"
        assert name in text_of(body)
    assert await contacts(integration_sessions, sender.source.id) == 0
    [(messages,)] = await rows(
        integration_sessions,
        "SELECT count(*) FROM inbound_message WHERE source_system = :s",
        s=sender.source.id,
    )
    assert messages == 0


async def test_the_ig_id_only_example_is_refused_asking_for_full_resource(
    integration_client, fhir_sender
) -> None:
    sender = await fhir_sender()
    body = outcome(await notify(integration_client, sender, example("id-only")), 422)
    assert "full-resource" in text_of(body)


async def test_the_ig_full_resource_example_is_refused_saying_what_is_missing(
    integration_client, integration_sessions, fhir_sender
) -> None:
    # the IG's Encounter has class VR and no start, and its subject no NHS number
    sender = await fhir_sender()
    body = outcome(await notify(integration_client, sender, example("full-resource")), 422)
    assert "Bundle.entry[1].resource.class" in expressions(body), body
    [letter] = await rows(
        integration_sessions,
        "SELECT channel, reason FROM dead_letter WHERE source_system = :s",
        s=sender.source.id,
    )
    assert letter.channel == "fhir" and "contact-kind" in letter.reason


async def test_an_event_notification_records_its_focus_once(
    integration_client, integration_sessions, fhir_sender
) -> None:
    sender = await fhir_sender()
    nhs = synthetic_nhs_number()
    raw = recordable(nhs)
    r = await notify(integration_client, sender, raw)
    assert r.status_code == 200, r.text
    assert "1 contact(s) recorded: Encounter/" in text_of(r.json())
    assert nhs not in r.text
    [row] = await rows(
        integration_sessions,
        "SELECT contact_kind, planned, status, source_ref FROM encounter WHERE source_system = :s",
        s=sender.source.id,
    )
    assert (row.contact_kind, row.planned, row.status) == ("nhs_111", False, "in_progress")
    assert row.source_ref == "Encounter/86009987-eabe-42bf-8c02-b112b18cb616"
    again = await notify(integration_client, sender, copy.deepcopy(raw))
    assert again.status_code == 200 and "received before" in text_of(again.json())
    assert await contacts(integration_sessions, sender.source.id) == 1


async def test_a_later_event_about_the_same_encounter_revises_it(
    integration_client, integration_sessions, fhir_sender
) -> None:
    sender = await fhir_sender()
    nhs = synthetic_nhs_number()
    raw = recordable(nhs)
    assert (await notify(integration_client, sender, raw)).status_code == 200
    later = copy.deepcopy(raw)
    later["entry"][0]["resource"]["parameter"][4]["valueString"] = "3"
    later["entry"][1]["resource"]["status"] = "finished"
    r = await notify(integration_client, sender, later)
    assert r.status_code == 200, r.text
    [row] = await rows(
        integration_sessions,
        "SELECT status, revision FROM encounter WHERE source_system = :s",
        s=sender.source.id,
    )
    assert (row.status, row.revision) == ("finished", 2)


async def test_a_focus_that_is_not_a_contact_is_refused(integration_client, fhir_sender) -> None:
    sender = await fhir_sender()
    raw = recordable(synthetic_nhs_number())
    focus = raw["entry"][0]["resource"]["parameter"][5]["part"][2]
    focus["valueReference"]["reference"] = raw["entry"][2]["fullUrl"]  # the Patient
    body = outcome(await notify(integration_client, sender, raw), 422)
    assert "not Patient" in text_of(body)


BAD = [
    ("not a history Bundle", lambda r: r.update(type="batch"), "Bundle.type"),
    (
        "no status first",
        lambda r: r["entry"].pop(0),
        "Bundle.entry[0].resource",
    ),
    (
        "an unknown notification type",
        lambda r: r["entry"][0]["resource"]["parameter"][3].update(valueCode="gossip"),
        "Bundle.entry[0].resource.parameter",
    ),
    (
        "a structurally invalid focus",
        lambda r: r["entry"][1]["resource"].update(status=["finished"]),
        "Bundle.entry[1].resource.status",
    ),
]


async def test_bad_notifications_are_refused_saying_where(integration_client, fhir_sender) -> None:
    sender = await fhir_sender()
    for name, spoil, path in BAD:
        raw = recordable(synthetic_nhs_number())
        spoil(raw)
        body = outcome(await notify(integration_client, sender, raw), 422)
        assert path in expressions(body), (name, body)
    r = await integration_client.post(
        "/fhir/subscription-notification", content=b"nonsense", headers=sender.headers
    )
    assert "not JSON" in text_of(outcome(r, 400))


async def test_a_r4b_subscription_status_is_read_too(
    integration_client, integration_sessions, fhir_sender
) -> None:
    sender = await fhir_sender()
    raw = recordable(synthetic_nhs_number())
    raw["entry"][0]["resource"] = {
        "resourceType": "SubscriptionStatus",
        "status": "active",
        "type": "event-notification",
        "eventsSinceSubscriptionStart": "2",
        "notificationEvent": [
            {"eventNumber": "2", "focus": {"reference": raw["entry"][1]["fullUrl"]}}
        ],
        "subscription": {"reference": "https://example.org/fhir/Subscription/admission"},
        "topic": "http://hl7.org/SubscriptionTopic/admission",
    }
    r = await notify(integration_client, sender, raw)
    assert r.status_code == 200, r.text
    assert await contacts(integration_sessions, sender.source.id) == 1
