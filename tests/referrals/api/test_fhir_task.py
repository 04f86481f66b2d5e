"""A receiving system writes a referral's status back as an R4 Task (PUT /fhir/Task/{id}, POST
/fhir/Task with basedOn) and finds it by its ServiceRequest (GET /fhir/Task?based-on=), on the
real database: each status maps onto the state machine's transition, with its event, history
row and audit entry; what the state machine refuses is a 409; bad Tasks are 4xx
OperationOutcomes; the same 404 for absent and not yours.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.task import Task
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.settings import Settings
from tests.conftest import auth
from tests.referrals.support import (
    Parties,
    audit_of_referral,
    drive_to,
    events_of,
    new_org,
    new_parties,
    transitions_of,
)

FHIR_JSON = "application/fhir+json"
BASE = "https://waymark.nhs.example/fhir"
STATE_SYSTEM = f"{BASE}/CodeSystem/referral-state"
REASON_SYSTEM = f"{BASE}/CodeSystem/transition-reason"


def task(
    referral_id: str,
    status: str,
    *,
    business: str | None = None,
    reason: str | None = None,
    appointment: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "resourceType": "Task",
        "id": referral_id,
        "status": status,
        "intent": "order",
        "basedOn": [{"reference": f"ServiceRequest/{referral_id}"}],
        "focus": {"reference": f"ServiceRequest/{referral_id}"},
    }
    if business:
        t["businessStatus"] = {"coding": [{"system": STATE_SYSTEM, "code": business}]}
    if reason:
        t["statusReason"] = {"coding": [{"system": REASON_SYSTEM, "code": reason}]}
    if appointment:
        t["restriction"] = {"period": {"start": appointment}}
    if note:
        t["note"] = [{"text": note}]
    return t


def soon(days: int = 10) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0).isoformat()


async def put(
    client: httpx.AsyncClient, headers: dict[str, str], body: Any, rid: str | None = None
) -> httpx.Response:
    rid = rid or body["id"]
    return await client.put(
        f"/fhir/Task/{rid}", json=body, headers={**headers, "content-type": FHIR_JSON}
    )


def assert_outcome(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(FHIR_JSON)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    text = " ".join(i.get("diagnostics", "") for i in body["issue"])
    for w in words:
        assert w in text, (w, text)
    return body


@pytest.fixture
async def parties(settings: Settings, referrals_sessions: async_sessionmaker) -> Parties:
    return await new_parties(settings, referrals_sessions)


# (from state, Task sent, the state it makes, the action, the reason)
WRITE_BACKS: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("submitted", {"status": "accepted"}, "accepted", None),
    (
        "submitted",
        {"status": "rejected", "reason": "does-not-meet-criteria"},
        "rejected",
        "does-not-meet-criteria",
    ),
    (
        "submitted",
        {"status": "rejected", "reason": "advice-and-guidance-given", "note": "Try physio first"},
        "returned",
        "advice-and-guidance-given",
    ),
    (
        "submitted",
        {"status": "rejected", "business": "returned", "reason": "insufficient-information"},
        "returned",
        "insufficient-information",
    ),
    ("accepted", {"status": "in-progress", "appointment": soon()}, "booked", None),
    ("booked", {"status": "in-progress", "business": "attended"}, "attended", None),
    ("booked", {"status": "in-progress", "business": "did_not_attend"}, "did_not_attend", None),
    (
        "attended",
        {"status": "completed", "reason": "treatment-completed"},
        "discharged",
        "treatment-completed",
    ),
    (
        "accepted",
        {"status": "cancelled", "reason": "patient-request"},
        "cancelled",
        "patient-request",
    ),
    (
        "submitted",
        {"status": "on-hold", "reason": "awaiting-information"},
        "on_hold",
        "awaiting-information",
    ),
    ("on_hold", {"status": "requested"}, "submitted", None),
]


class TestWriteBack:
    @pytest.mark.parametrize(
        "start, sent, state, reason",
        WRITE_BACKS,
        ids=[f"{a}->{c}" for a, _, c, _ in WRITE_BACKS],
    )
    async def test_a_task_status_moves_the_referral_through_the_state_machine(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
        start: str,
        sent: dict[str, Any],
        state: str,
        reason: str | None,
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, start)
        before = len(await events_of(referrals_sessions, referral["id"]))
        r = await put(referrals_client, parties.receiver(settings), task(referral["id"], **sent))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(FHIR_JSON)
        got = r.json()
        Task.model_validate(got)
        assert got["businessStatus"]["coding"][0]["code"] == state
        assert r.headers["ETag"] == f'W/"{referral["version"] + 1}"'
        if reason:
            assert got["statusReason"]["coding"][0]["code"] == reason
        events = await events_of(referrals_sessions, referral["id"])
        assert len(events) == before + 1
        assert events[-1].payload["data"]["state"] == state
        assert events[-1].payload["data"]["transition_reason"] == reason
        history = await transitions_of(referrals_sessions, referral["id"])
        assert history[-1].to_state == state and history[-1].actor == parties.receiver_user
        if "note" in sent:
            assert history[-1].note == sent["note"]
        if state == "booked":
            assert history[-1].appointment_at is not None
            assert got["restriction"]["period"]["start"]
        audit = await audit_of_referral(referrals_sessions, referral["id"])
        assert any("via fhir-task" in (a.detail or "") for a in audit)

    async def test_post_with_based_on_updates_the_same_task(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        body = task(referral["id"], "accepted")
        del body["id"], body["focus"]
        r = await referrals_client.post(
            "/fhir/Task",
            json=body,
            headers={**parties.receiver(settings), "content-type": FHIR_JSON},
        )
        assert r.status_code == 200, r.text
        version = r.json()["meta"]["versionId"]
        assert r.headers["Location"] == (
            f"http://referrals/fhir/Task/{referral['id']}/_history/{version}"
        )
        assert r.json()["status"] == "accepted"
        read = await referrals_client.get(
            f"/referrals/{referral['id']}", headers=parties.referrer(settings)
        )
        assert read.json()["state"] == "accepted"
        audit = await audit_of_referral(referrals_sessions, referral["id"])
        [entry] = [a for a in audit if a.action == "transition:accept"]
        assert entry.actor == parties.receiver_user and "via fhir-task" in entry.detail

    async def test_the_same_status_again_changes_nothing(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        body = task(referral["id"], "accepted")
        first = await put(referrals_client, parties.receiver(settings), body)
        again = await put(referrals_client, parties.receiver(settings), body)
        assert first.status_code == again.status_code == 200
        assert again.json()["meta"]["versionId"] == first.json()["meta"]["versionId"]
        assert len(await events_of(referrals_sessions, referral["id"])) == 2

    async def test_if_match_is_checked_when_sent(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        stale = {**parties.receiver(settings), "If-Match": 'W/"7"'}
        r = await put(referrals_client, stale, task(referral["id"], "accepted"))
        assert_outcome(r, 412, "version")
        ok = {**parties.receiver(settings), "If-Match": f'W/"{referral["version"]}"'}
        assert (
            await put(referrals_client, ok, task(referral["id"], "accepted"))
        ).status_code == 200

    @pytest.mark.parametrize(
        "start, sent, word",
        [
            ("submitted", {"status": "completed", "reason": "treatment-completed"}, "submitted"),
            ("discharged", {"status": "accepted"}, "discharged"),
            ("submitted", {"status": "in-progress", "business": "attended"}, "attended"),
            ("cancelled", {"status": "requested", "business": "submitted"}, "cancelled"),
        ],
        ids=["complete-unseen", "reopen-closed", "attend-unbooked", "revive-cancelled"],
    )
    async def test_a_status_the_state_machine_refuses_is_a_409(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
        start: str,
        sent: dict[str, Any],
        word: str,
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, start)
        r = await put(referrals_client, parties.receiver(settings), task(referral["id"], **sent))
        assert_outcome(r, 409, word)


class TestAccess:
    async def test_the_referrer_may_not_accept_its_own_referral(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        r = await put(
            referrals_client, parties.referrer(settings), task(referral["id"], "accepted")
        )
        assert_outcome(r, 403, "receiving service")

    async def test_the_referrer_may_cancel(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        body = task(referral["id"], "cancelled", reason="referred-in-error")
        r = await put(referrals_client, parties.referrer(settings), body)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"

    @pytest.mark.parametrize("who", ["stranger", "other-ics-coordinator", "absent"])
    async def test_absent_and_not_yours_are_the_same_404(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties, who: str
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        rid = referral["id"] if who != "absent" else str(uuid.uuid4())
        headers = {
            "stranger": auth(settings, role="service_staff", org=new_org(), ics=parties.ics),
            "other-ics-coordinator": auth(settings, role="coordinator", org=new_org()),
            "absent": parties.receiver(settings),
        }[who]
        r = await put(referrals_client, headers, task(rid, "accepted"))
        assert_outcome(r, 404)
        found = await referrals_client.get(
            "/fhir/Task", params={"based-on": f"ServiceRequest/{rid}"}, headers=headers
        )
        assert found.status_code == 200 and found.json()["total"] == 0

    async def test_a_coordinator_reads_but_may_not_write_back(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        coordinator = auth(settings, role="coordinator", org=new_org(), ics=parties.ics)
        r = await put(referrals_client, coordinator, task(referral["id"], "accepted"))
        assert_outcome(r, 403)


class TestSearch:
    async def test_based_on_finds_the_referrals_task(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "booked")
        for param in ("based-on", "focus"):
            r = await referrals_client.get(
                "/fhir/Task",
                params={param: f"ServiceRequest/{referral['id']}"},
                headers=parties.referrer(settings),
            )
            assert r.status_code == 200, r.text
            bundle = r.json()
            Bundle.model_validate(bundle)
            assert bundle["total"] == 1
            [entry] = bundle["entry"]
            assert entry["resource"]["id"] == referral["id"]
            assert entry["resource"]["status"] == "in-progress"
            assert entry["resource"]["basedOn"] == [
                {"reference": f"ServiceRequest/{referral['id']}"}
            ]
        audit = await audit_of_referral(referrals_sessions, referral["id"])
        assert [a.detail for a in audit if a.resource_type == "Task"].count("search") == 2

    @pytest.mark.parametrize(
        "params",
        [{}, {"based-on": "Patient/1"}, {"based-on": "ServiceRequest/"}, {"subject": "x"}],
        ids=["none", "not-a-service-request", "no-id", "other-parameter"],
    )
    async def test_a_search_without_a_service_request_is_a_422(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
        params: dict[str, str],
    ) -> None:
        r = await referrals_client.get(
            "/fhir/Task", params=params, headers=parties.referrer(settings)
        )
        assert_outcome(r, 422, "based-on")


def _mut(**change: Any) -> Any:
    def apply(t: dict[str, Any]) -> dict[str, Any]:
        for k, v in change.items():
            if v is None:
                t.pop(k, None)
            else:
                t[k] = v
        return t

    return apply


BAD_TASKS: list[tuple[str, Any, int, str]] = [
    ("wrong-resource-type", _mut(resourceType="ServiceRequest"), 422, "Task"),
    ("status-missing", _mut(status=None), 422, "status"),
    ("status-banana", _mut(status="banana"), 422, "status"),
    ("status-draft", _mut(status="draft"), 422, "draft"),
    ("status-entered-in-error", _mut(status="entered-in-error"), 422, "entered-in-error"),
    ("intent-missing", _mut(intent=None), 422, "intent"),
    ("another-id", _mut(id=str(uuid.uuid4())), 422, "Task.id"),
    (
        "based-on-another-request",
        _mut(basedOn=[{"reference": f"ServiceRequest/{uuid.uuid4()}"}]),
        422,
        "another ServiceRequest",
    ),
    (
        "business-status-unknown",
        _mut(businessStatus={"coding": [{"system": STATE_SYSTEM, "code": "triaged"}]}),
        422,
        "businessStatus",
    ),
    (
        "business-status-other-system",
        _mut(businessStatus={"coding": [{"system": "http://example.org", "code": "accepted"}]}),
        422,
        "businessStatus",
    ),
    (
        "business-status-against-status",
        _mut(businessStatus={"coding": [{"system": STATE_SYSTEM, "code": "rejected"}]}),
        422,
        "does not go with",
    ),
    (
        "reason-other-system",
        _mut(statusReason={"coding": [{"system": "http://snomed.info/sct", "code": "1234567"}]}),
        422,
        "statusReason",
    ),
    ("reason-text-only", _mut(statusReason={"text": "busy"}), 422, "statusReason"),
    (
        "reason-not-for-accept",
        _mut(statusReason={"coding": [{"system": REASON_SYSTEM, "code": "patient-request"}]}),
        422,
        "reason",
    ),
    ("note-nul", _mut(note=[{"text": "a\u0000b"}]), 422, "control"),
    ("extension-not-a-list", _mut(extension={"url": "x"}), 422, "extension"),
]


class TestRefused:
    @pytest.mark.parametrize(
        "mutate, status, word",
        [(m, s, w) for _, m, s, w in BAD_TASKS],
        ids=[n for n, _, _, _ in BAD_TASKS],
    )
    async def test_a_bad_task_is_a_4xx_operation_outcome(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        parties: Parties,
        mutate: Any,
        status: int,
        word: str,
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        body = mutate(copy.deepcopy(task(referral["id"], "accepted")))
        r = await put(referrals_client, parties.receiver(settings), body, rid=referral["id"])
        assert_outcome(r, status, word)
        assert len(await events_of(referrals_sessions, referral["id"])) == 1

    async def test_a_booking_without_an_appointment_is_a_422(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "accepted")
        r = await put(
            referrals_client, parties.receiver(settings), task(referral["id"], "in-progress")
        )
        assert_outcome(r, 422, "appointment")

    async def test_a_rejection_without_a_reason_is_a_422(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        r = await put(
            referrals_client, parties.receiver(settings), task(referral["id"], "rejected")
        )
        assert_outcome(r, 422, "reason")

    @pytest.mark.parametrize(
        "content, ctype, status",
        [
            (b"{not json", FHIR_JSON, 400),
            (b"", FHIR_JSON, 400),
            (b"\xff\xfe\x00", FHIR_JSON, 400),
            (b'{"resourceType": "Task", "x": "\\ud800"}', FHIR_JSON, 400),
            (b"[]", FHIR_JSON, 422),
            (b"null", FHIR_JSON, 422),
            (b"<Task xmlns='http://hl7.org/fhir'/>", "application/fhir+xml", 415),
            (b"status=accepted", "application/x-www-form-urlencoded", 415),
        ],
        ids=["broken", "empty", "binary", "lone-surrogate", "array", "null", "xml", "form"],
    )
    async def test_a_body_that_is_not_a_json_task_is_refused(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        parties: Parties,
        content: bytes,
        ctype: str,
        status: int,
    ) -> None:
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        for method, url in (("PUT", f"/fhir/Task/{referral['id']}"), ("POST", "/fhir/Task")):
            r = await referrals_client.request(
                method,
                url,
                content=content,
                headers={**parties.receiver(settings), "content-type": ctype},
            )
            assert_outcome(r, status)

    async def test_a_post_without_based_on_is_a_422(
        self, referrals_client: httpx.AsyncClient, settings: Settings, parties: Parties
    ) -> None:
        body = {"resourceType": "Task", "status": "accepted", "intent": "order"}
        r = await referrals_client.post(
            "/fhir/Task",
            json=body,
            headers={**parties.receiver(settings), "content-type": FHIR_JSON},
        )
        assert_outcome(r, 422, "basedOn")
