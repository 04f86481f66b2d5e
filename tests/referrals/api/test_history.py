"""The historical import (POST /referrals/history, GET /referrals/history/{system}/{ref}) on the
real database: a referral an EHR already holds, recorded with its real past dates, each step
an event whose CloudEvent time is when it happened; idempotent per source referral; the
integration service's credential only; every refusal a 4xx problem naming the field or step.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.referrals.events import HISTORY_SOURCE
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import end_offsets, process_token, read_topic, synthetic_nhs_number
from tests.referrals.support import (
    Parties,
    assert_event_matches_its_schema,
    assert_no_personal_data,
    assert_problem,
    audit_of_referral,
    events_of,
    new_org,
    new_parties,
    outbox_of,
    query,
    referral_row,
    transitions_of,
)


def importer(s: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {process_token(s, 'integration')}"}


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).replace(microsecond=0).isoformat()


def history_body(parties: Parties, **overrides: Any) -> dict[str, Any]:
    """A referral from an e-RS worklist extract: submitted 200 days ago, accepted, booked,
    attended."""
    body: dict[str, Any] = {
        "source_system": "ers-worklist",
        "source_ref": f"{uuid.uuid4().int % 10**12:012d}",
        "nhs_number": synthetic_nhs_number(),
        "from_org": parties.referrer_org,
        "to_org": parties.receiver_org,
        "to_service_id": parties.service.id,
        "service_category": parties.service.category,
        "priority": "routine",
        "reason_codes": ["279039007"],
        "registered_practice": parties.referrer_org,
        "history": [
            {"state": "submitted", "at": ago(200)},
            {"state": "accepted", "at": ago(190), "reason": None},
            {"state": "booked", "at": ago(185), "appointment_at": ago(150)},
            {"state": "attended", "at": ago(150)},
        ],
    }
    body.update(overrides)
    return body


async def post(client: httpx.AsyncClient, s: Settings, body: Any) -> httpx.Response:
    return await client.post("/referrals/history", json=body, headers=importer(s))


@pytest.fixture
async def parties(settings: Settings, referrals_sessions: async_sessionmaker) -> Parties:
    return await new_parties(settings, referrals_sessions)


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class TestImport:
    async def test_a_history_becomes_a_referral_with_its_real_past_dates(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        body = history_body(parties)
        r = await post(referrals_client, settings, body)
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["created"] is True and out["events"] == 4 and out["stored_steps"] == 4
        assert out["state"] == "attended"
        row = await referral_row(referrals_sessions, out["referral_id"])
        steps = body["history"]
        assert row.created_at == _instant(steps[0]["at"])
        assert row.submitted_at == _instant(steps[0]["at"])
        assert row.updated_at == _instant(steps[-1]["at"])
        assert row.appointment_at == _instant(steps[2]["appointment_at"])
        assert (row.source_system, row.source_ref) == ("ers-worklist", body["source_ref"])
        assert row.patient_id == pseudonymise(body["nhs_number"], settings)
        assert row.given_name is None and row.birth_date is None  # never guessed
        assert (row.consent_basis, row.consent_to_referral) == ("implied", True)
        assert row.source == "gp"  # from_org is the person's registered practice
        assert row.version == 4
        history = await transitions_of(referrals_sessions, out["referral_id"])
        assert [(t.from_state, t.to_state) for t in history] == [
            (None, "submitted"),
            ("submitted", "accepted"),
            ("accepted", "booked"),
            ("booked", "attended"),
        ]
        assert [t.at for t in history] == [_instant(s["at"]) for s in steps]
        assert all(t.imported and t.actor == "waymark-integration" for t in history)

    async def test_each_step_is_an_event_at_the_time_it_happened(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        body = history_body(parties)
        r = await post(referrals_client, settings, body)
        assert r.status_code == 201, r.text
        rows = await events_of(referrals_sessions, r.json()["referral_id"])
        assert [e.event_type for e in rows] == [
            "uk.waymark.referral.submitted",
            "uk.waymark.referral.accepted",
            "uk.waymark.referral.booked",
            "uk.waymark.referral.attended",
        ]
        assert [_instant(e.payload["time"]) for e in rows] == [
            _instant(s["at"]) for s in body["history"]
        ]
        assert {e.payload["source"] for e in rows} == {HISTORY_SOURCE}
        assert {e.topic for e in rows} == {settings.topic("waymark.referrals.v1")}
        assert [e.payload["data"]["previous_state"] for e in rows] == [
            None,
            "submitted",
            "accepted",
            "booked",
        ]
        assert rows[2].payload["data"]["appointment_at"] is not None
        for e in rows:
            assert e.payload["subject"] == pseudonymise(body["nhs_number"], settings)
            assert_event_matches_its_schema(e.payload)
            assert_no_personal_data(e.payload, body["nhs_number"], body["source_ref"])

    async def test_the_import_is_audited_with_its_source(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        body = history_body(parties)
        r = await post(referrals_client, settings, body)
        audit = await audit_of_referral(referrals_sessions, r.json()["referral_id"])
        imports = [a for a in audit if a.action == "import"]
        assert len(imports) == 1
        assert imports[0].actor == "waymark-integration"
        assert f"ers-worklist {body['source_ref']}" in imports[0].detail
        assert imports[0].patient_id == pseudonymise(body["nhs_number"], settings)

    async def test_the_receiving_service_and_the_referrer_can_open_it(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
    ) -> None:
        r = await post(referrals_client, settings, history_body(parties))
        rid = r.json()["referral_id"]
        for headers in (parties.receiver(settings), parties.referrer(settings)):
            got = await referrals_client.get(f"/referrals/{rid}", headers=headers)
            assert got.status_code == 200, got.text
            assert got.json()["state"] == "attended"
            assert got.json()["source_system"] == "ers-worklist"
        task = await referrals_client.get(f"/fhir/Task/{rid}", headers=parties.receiver(settings))
        assert task.status_code == 200 and task.json()["status"] == "in-progress"
        sr = await referrals_client.get(
            f"/fhir/ServiceRequest/{rid}", headers=parties.referrer(settings)
        )
        assert sr.status_code == 200, sr.text
        stranger = auth(settings, role="clinician", org=new_org(), ics=parties.ics)
        hidden = await referrals_client.get(f"/referrals/{rid}", headers=stranger)
        assert hidden.status_code == 404

    async def test_a_service_the_directory_does_not_list_imports_with_no_directory_id(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        body = history_body(parties, to_service_id=None, to_org=new_org("RX"))
        r = await post(referrals_client, settings, body)
        assert r.status_code == 201, r.text
        row = await referral_row(referrals_sessions, r.json()["referral_id"])
        assert row.to_service_id is None and row.to_org == body["to_org"]
        events = await events_of(referrals_sessions, row.id)
        assert {e.payload["data"]["to_service_id"] for e in events} == {""}
        assert {e.payload["data"]["to_org"] for e in events} == {body["to_org"]}
        receiver = auth(settings, role="service_staff", org=body["to_org"], ics=parties.ics)
        got = await referrals_client.get(f"/referrals/{row.id}", headers=receiver)
        assert got.status_code == 200 and got.json()["to_service_id"] is None
        sr = await referrals_client.get(f"/fhir/ServiceRequest/{row.id}", headers=receiver)
        assert sr.status_code == 200, sr.text
        performer = sr.json()["performer"]
        assert performer == [
            {
                "identifier": {
                    "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                    "value": body["to_org"],
                }
            }
        ]

    async def test_a_referral_still_waiting_imports_open(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
    ) -> None:
        body = history_body(parties, history=[{"state": "submitted", "at": ago(40)}])
        r = await post(referrals_client, settings, body)
        assert r.status_code == 201 and r.json()["state"] == "submitted"
        worklist = await referrals_client.get("/worklist", headers=parties.receiver(settings))
        [item] = [i for i in worklist.json()["items"] if i["id"] == r.json()["referral_id"]]
        assert item["waiting_days"] == 40  # the wait counts from the real submission

    async def test_every_path_through_the_state_machine_imports(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
    ) -> None:
        paths = [
            [("rejected", "not-appropriate-for-service")],
            [("returned", "advice-and-guidance-given")],
            [("cancelled", "patient-request")],
            [("on_hold", "awaiting-information"), ("submitted", None), ("accepted", None)],
            [("accepted", None), ("on_hold", "patient-unwell"), ("accepted", None)],
            [
                ("accepted", None),
                ("booked", None),
                ("did_not_attend", None),
                ("booked", None),
                ("attended", None),
                ("discharged", "treatment-completed"),
            ],
        ]
        for path in paths:
            steps = [{"state": "submitted", "at": ago(100)}]
            for i, (state, reason) in enumerate(path):
                step: dict[str, Any] = {"state": state, "at": ago(90 - i), "reason": reason}
                if state == "booked":
                    step["appointment_at"] = ago(60 - i)
                steps.append(step)
            r = await post(referrals_client, settings, history_body(parties, history=steps))
            assert r.status_code == 201, (path, r.text)
            assert r.json()["state"] == path[-1][0]
            assert r.json()["events"] == len(steps)


class TestIdempotency:
    async def test_the_same_history_again_changes_nothing(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        body = history_body(parties)
        first = await post(referrals_client, settings, body)
        again = await post(referrals_client, settings, body)
        assert again.status_code == 200, again.text
        assert again.json()["referral_id"] == first.json()["referral_id"]
        assert again.json()["created"] is False and again.json()["events"] == 0
        patient = pseudonymise(body["nhs_number"], settings)
        assert len(await outbox_of(referrals_sessions, patient)) == 4
        rows = await query(
            referrals_sessions, "SELECT id FROM referral WHERE patient_id = :p", p=patient
        )
        assert len(rows) == 1
        audit = await audit_of_referral(referrals_sessions, first.json()["referral_id"])
        assert [a.action for a in audit].count("import") == 1

    async def test_the_same_instants_in_another_offset_are_the_same_history(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        body = history_body(parties)
        await post(referrals_client, settings, body)
        shifted = copy.deepcopy(body)
        for step in shifted["history"]:
            step["at"] = _instant(step["at"]).astimezone(timezone(timedelta(hours=1))).isoformat()
        again = await post(referrals_client, settings, shifted)
        assert again.status_code == 200 and again.json()["events"] == 0, again.text

    async def test_a_later_extract_applies_only_its_new_steps(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        body = history_body(parties)
        first = await post(referrals_client, settings, body)
        later = copy.deepcopy(body)
        later["history"].append(
            {"state": "discharged", "at": ago(100), "reason": "treatment-completed"}
        )
        r = await post(referrals_client, settings, later)
        assert r.status_code == 200, r.text
        assert r.json() | {"referral_id": None} == {
            "referral_id": None,
            "created": False,
            "events": 1,
            "steps_applied": 1,
            "stored_steps": 5,
            "state": "discharged",
        }
        rows = await events_of(referrals_sessions, first.json()["referral_id"])
        assert len(rows) == 5
        assert rows[-1].event_type == "uk.waymark.referral.discharged"
        assert _instant(rows[-1].payload["time"]) == _instant(later["history"][-1]["at"])
        assert rows[-1].payload["data"]["transition_reason"] == "treatment-completed"
        audit = await audit_of_referral(referrals_sessions, first.json()["referral_id"])
        assert [a.action for a in audit].count("import") == 2

    async def test_an_older_extract_is_nothing_new(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        body = history_body(parties)
        await post(referrals_client, settings, body)
        older = copy.deepcopy(body)
        older["history"] = older["history"][:2]
        r = await post(referrals_client, settings, older)
        assert r.status_code == 200 and r.json()["events"] == 0
        assert r.json()["stored_steps"] == 4 and r.json()["state"] == "attended"

    @pytest.mark.parametrize(
        "index, change, word",
        [
            (1, {"state": "rejected", "reason": "does-not-meet-criteria"}, "history[1]"),
            (2, {"appointment_at": ago(149)}, "history[2]"),
            (0, {"at": ago(201)}, "history[0]"),
            (3, {"state": "did_not_attend"}, "history[3]"),
        ],
        ids=["other-state", "other-appointment", "other-time", "other-outcome"],
    )
    async def test_a_contradicting_history_is_a_409_naming_the_step(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
        index: int,
        change: dict[str, Any],
        word: str,
    ) -> None:
        body = history_body(parties)
        first = await post(referrals_client, settings, body)
        other = copy.deepcopy(body)
        other["history"][index].update(change)
        r = await post(referrals_client, settings, other)
        problem = assert_problem(r, 409, word, "contradicts")
        assert problem["step"] == index
        assert len(await events_of(referrals_sessions, first.json()["referral_id"])) == 4

    @pytest.mark.parametrize(
        "field, value",
        [("to_org", "OTHER-1"), ("nhs_number", None), ("service_category", "crisis")],
    )
    async def test_a_source_referral_whose_facts_changed_is_a_409(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
        field: str,
        value: Any,
    ) -> None:
        body = history_body(parties)
        await post(referrals_client, settings, body)
        changed = dict(body, **{field: value if value else synthetic_nhs_number()})
        r = await post(referrals_client, settings, changed)
        assert_problem(r, 409, field)

    async def test_new_steps_after_a_change_made_in_waymark_are_a_409(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        body = history_body(parties, history=[{"state": "submitted", "at": ago(30)}])
        first = await post(referrals_client, settings, body)
        rid = first.json()["referral_id"]
        moved = await referrals_client.post(
            f"/referrals/{rid}/accept",
            json={},
            headers={**parties.receiver(settings), "If-Match": 'W/"1"'},
        )
        assert moved.status_code == 200, moved.text
        later = copy.deepcopy(body)
        later["history"].append({"state": "rejected", "at": ago(20), "reason": "patient-declined"})
        r = await post(referrals_client, settings, later)
        assert_problem(r, 409, "history[1]", "moved on")

    async def test_two_imports_of_one_referral_at_once_make_one(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        body = history_body(parties)
        a, b = await asyncio.gather(
            post(referrals_client, settings, body), post(referrals_client, settings, body)
        )
        assert sorted([a.status_code, b.status_code]) == [200, 201], (a.text, b.text)
        assert a.json()["referral_id"] == b.json()["referral_id"]
        patient = pseudonymise(body["nhs_number"], settings)
        assert len(await outbox_of(referrals_sessions, patient)) == 4


class TestResume:
    async def test_the_importer_reads_how_far_an_import_got(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        body = history_body(parties)
        r = await post(referrals_client, settings, body)
        got = await referrals_client.get(
            f"/referrals/history/ers-worklist/{body['source_ref']}", headers=importer(settings)
        )
        assert got.status_code == 200, got.text
        assert got.json() == {
            "referral_id": r.json()["referral_id"],
            "source_system": "ers-worklist",
            "source_ref": body["source_ref"],
            "stored_steps": 4,
            "state": "attended",
            "last_step_at": got.json()["last_step_at"],
        }
        assert _instant(got.json()["last_step_at"]) == _instant(body["history"][-1]["at"])
        audit = await audit_of_referral(referrals_sessions, r.json()["referral_id"])
        reads = [a for a in audit if a.resource_type == "ReferralImport"]
        assert [(a.action, a.actor) for a in reads] == [("read", "waymark-integration")]

    async def test_an_unknown_source_referral_is_a_404(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await referrals_client.get(
            "/referrals/history/ers-worklist/999999999999", headers=importer(settings)
        )
        assert_problem(r, 404, "ers-worklist")

    @pytest.mark.parametrize("path", ["/referrals/history/ERS/1", "/referrals/history/ers/%20x"])
    async def test_a_malformed_address_is_a_422(
        self, referrals_client: httpx.AsyncClient, settings: Settings, path: str
    ) -> None:
        r = await referrals_client.get(path, headers=importer(settings))
        assert_problem(r, 422)


class TestAccess:
    @pytest.mark.parametrize(
        "who",
        [
            "clinician",
            "service_staff",
            "coordinator",
            "partner",
            "admin",
            "ics_lead",
            "notifications-service",
            "journeys-service",
        ],
    )
    async def test_only_the_integration_service_may_import_or_read_imports(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
        who: str,
    ) -> None:
        if who.endswith("-service"):
            headers = {
                "Authorization": f"Bearer {process_token(settings, who.removesuffix('-service'))}"
            }
        else:
            headers = auth(settings, role=who, org=parties.referrer_org, ics=parties.ics)
        # another Waymark process's client lacks the scope: its token is refused for that
        # (RFC 6750 insufficient_scope) before any role or relationship is looked at
        refusal = "referral.history_import" if who.endswith("-service") else "integration service"
        body = history_body(parties)
        r = await referrals_client.post("/referrals/history", json=body, headers=headers)
        assert_problem(r, 403, refusal)
        patient = pseudonymise(body["nhs_number"], settings)
        assert await outbox_of(referrals_sessions, patient) == []
        await post(referrals_client, settings, body)
        read = await referrals_client.get(
            f"/referrals/history/ers-worklist/{body['source_ref']}", headers=headers
        )
        assert_problem(read, 403, refusal)

    async def test_no_token_is_a_401(self, referrals_client: httpx.AsyncClient) -> None:
        r = await referrals_client.post("/referrals/history", json={})
        assert_problem(r, 401)


Mutator = Callable[[dict[str, Any]], None]


def _set(key: str, value: Any) -> Mutator:
    return lambda b: b.__setitem__(key, value)


def _step(i: int, **change: Any) -> Mutator:
    return lambda b: b["history"][i].update(change)


def _steps(*steps: dict[str, Any]) -> Mutator:
    return lambda b: b.__setitem__("history", list(steps))


def _bad_nhs() -> str:
    n = synthetic_nhs_number()
    return n[:9] + str((int(n[9]) + 1) % 10)


BAD: list[tuple[str, Mutator, str]] = [
    ("source-system-capitals", _set("source_system", "ERS"), "source_system"),
    ("source-system-empty", _set("source_system", ""), "source_system"),
    ("source-system-too-long", _set("source_system", "a" * 64), "source_system"),
    ("source-ref-missing", lambda b: b.pop("source_ref"), "source_ref"),
    ("source-ref-empty", _set("source_ref", ""), "source_ref"),
    ("source-ref-space", _set("source_ref", "12 34"), "source_ref"),
    ("source-ref-too-long", _set("source_ref", "1" * 65), "source_ref"),
    ("nhs-number-mod-11", lambda b: b.__setitem__("nhs_number", _bad_nhs()), "NHS number"),
    ("nhs-number-letters", _set("nhs_number", "94347659AB"), "NHS number"),
    ("nhs-number-missing", lambda b: b.pop("nhs_number"), "nhs_number"),
    ("from-org-bad", _set("from_org", "A 1"), "from_org"),
    ("to-org-missing", lambda b: b.pop("to_org"), "to_org"),
    ("category-unknown", _set("service_category", "pain"), "service_category"),
    ("priority-unknown", _set("priority", "asap"), "priority"),
    ("reason-code-not-snomed", _set("reason_codes", ["M54.5"]), "SNOMED"),
    ("registered-practice-bad", _set("registered_practice", "!"), "registered_practice"),
    ("extra-field", _set("patient_name", "Alex"), "patient_name"),
    ("history-empty", _set("history", []), "history"),
    ("history-not-a-list", _set("history", {"state": "submitted"}), "history"),
    ("step-state-unknown", _step(1, state="triaged"), "history.1.state"),
    ("step-at-missing", lambda b: b["history"][1].pop("at"), "history.1.at"),
    ("step-at-naive", _step(1, at="2026-01-04T09:12:00"), "history.1.at"),
    ("step-at-not-a-time", _step(1, at="yesterday"), "history.1.at"),
    ("step-extra-field", _step(1, note="seen"), "history.1.note"),
    ("step-reason-bad-format", _step(1, reason="Not OK"), "history.1.reason"),
    ("first-step-not-submitted", _step(0, state="accepted"), "history[0]"),
    ("first-step-draft", _step(0, state="draft"), "history[0]"),
    ("submitted-with-reason", _step(0, reason="patient-request"), "history[0]"),
    ("not-allowed-transition", _step(1, state="attended"), "history[1] (attended)"),
    ("submitted-twice", _step(1, state="submitted"), "history[1]"),
    ("reject-without-reason", _step(1, state="rejected"), "history[1] (rejected)"),
    ("reject-with-a-return-reason", _step(1, state="rejected", reason="refer-elsewhere"), "reject"),
    ("accept-with-a-reason", _step(1, reason="patient-request"), "history[1]"),
    ("booked-without-appointment", _step(2, appointment_at=None), "appointment_at"),
    ("appointment-on-an-accept", _step(1, appointment_at=ago(3)), "history[1]"),
    ("appointment-in-2200", _step(2, appointment_at="2200-01-01T09:00:00Z"), "appointment_at"),
    (
        "step-in-the-future",
        _step(3, at=(datetime.now(UTC) + timedelta(days=2)).isoformat()),
        "future",
    ),
    ("step-before-2000", _step(0, at="1999-12-31T23:00:00Z"), "2000"),
    ("steps-out-of-order", _step(2, at=ago(195)), "history[2]"),
    (
        "after-a-closure",
        lambda b: b["history"].append({"state": "accepted", "at": ago(1)}),
        "history[4]",
    ),
    ("unknown-service", _set("to_service_id", "svc-not-in-the-directory"), "to_service_id"),
    ("service-of-another-org", _set("to_org", "SOMEONE-ELSE"), "to_org"),
    ("service-of-another-category", _set("service_category", "crisis"), "service_category"),
    ("to-service-id-empty", _set("to_service_id", ""), "to_service_id"),
    ("too-many-steps", lambda b: b.__setitem__("history", b["history"] * 300), "history"),
]


class TestRefused:
    @pytest.mark.parametrize(
        "mutate, word", [(m, w) for _, m, w in BAD], ids=[n for n, _, _ in BAD]
    )
    async def test_a_bad_history_is_a_422_naming_what_is_wrong(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
        mutate: Mutator,
        word: str,
    ) -> None:
        body = history_body(parties)
        mutate(body)
        r = await post(referrals_client, settings, body)
        problem = assert_problem(r, 422)
        assert word in r.text, (word, problem)
        nhs = body.get("nhs_number")
        if isinstance(nhs, str):
            assert nhs not in r.text  # never echo patient data back
            patient = pseudonymise(nhs.replace(" ", ""), settings)
            assert await outbox_of(referrals_sessions, patient) == []

    @pytest.mark.parametrize("content", [b"{not json", b"", b"[]", b"null", b'"history"'], ids=str)
    async def test_a_body_that_is_not_an_object_is_a_4xx(
        self, referrals_client: httpx.AsyncClient, settings: Settings, content: bytes
    ) -> None:
        r = await referrals_client.post(
            "/referrals/history",
            content=content,
            headers={**importer(settings), "content-type": "application/json"},
        )
        assert 400 <= r.status_code < 500, r.text


class TestOnTheTopic:
    async def test_the_relay_publishes_the_steps_with_their_past_times_in_order(
        self,
        running_apps: Settings,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
    ) -> None:
        """The test stack's outbox relay publishes the imported steps to the instance's
        referrals topic: each CloudEvent's time is its step's, in the patient's order."""
        topic = settings.topic("waymark.referrals.v1")
        start = await end_offsets(settings, topic)
        body = history_body(parties)
        r = await post(referrals_client, settings, body)
        assert r.status_code == 201, r.text
        patient = pseudonymise(body["nhs_number"], settings)

        def mine(records: list[Any]) -> list[dict[str, Any]]:
            out = [json.loads(rec.value) for rec in records if rec.key == patient.encode()]
            return [e for e in out if e["data"]["referral_id"] == r.json()["referral_id"]]

        records = await read_topic(
            settings, topic, until=lambda recs: len(mine(recs)) >= 4, from_offsets=start
        )
        events = mine(records)
        assert [e["type"].rsplit(".", 1)[1] for e in events] == [
            "submitted",
            "accepted",
            "booked",
            "attended",
        ]
        assert [_instant(e["time"]) for e in events] == [_instant(s["at"]) for s in body["history"]]
        assert {e["source"] for e in events} == {HISTORY_SOURCE}
