"""The audit log: every read and write of patient data through each service's API is in that
service's `audit_log` with who (actor, organisation, roles), what (action, resource type and
id, the patient's pseudonymous id) and when; and nothing can alter the log: no route of any
API writes to it but by adding, no code updates or deletes it, and the database itself refuses
UPDATE, DELETE and TRUNCATE of it in every schema.

Every route of every app is classified below: patient data (called here, and its audit entry
checked), partner event data (audited without a patient id: see EVENT_DATA), covered by
another test that needs the running stack (REFERENCED), or not patient data (with the
reason). A new route fails `test_every_route_is_classified` until someone decides which.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.dashboard.session import csrf_for
from shared.db import unit_of_work
from shared.fhir import NHS_NUMBER_SYSTEM
from shared.settings import SERVICE_SCHEMAS, Settings
from tests.care_plans.support import plan_content
from tests.conftest import token
from tests.helpers import referral_body, relate, synthetic_nhs_number
from tests.notifications.alert_support import index_referral, put_alert
from tests.referrals.support import new_service
from tests.security.conftest import Api
from tests.security.support import WRITE_METHODS, operations

ROOT = Path(__file__).resolve().parent.parent.parent

# --- the world: one patient with data in every service --------------------------------------


@dataclass
class Patient:
    s: Settings
    apis: dict[str, Api]
    sessions: dict[str, async_sessionmaker]
    org: str
    svc_org: str
    svc_id: str
    nhs: str
    pid: str = ""
    referral_id: str = ""
    plan_id: str = ""
    assessment_id: str = ""
    subscription_id: str = ""
    delivery_id: str = ""
    index_referral_id: str = ""
    message_id: str = ""
    inbox_owner: str = ""
    inbox_item: str = ""
    alert_id: str = ""
    scratch: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> httpx.AsyncClient:
        return self.apis[service].client

    def referral(self, nhs: str | None = None) -> dict[str, Any]:
        body = referral_body(to_service_id=self.svc_id, to_org=self.svc_org)
        body["patient"]["nhs_number"] = nhs or self.nhs
        return body


async def _sql(sessions: async_sessionmaker, statement: str, **params: Any) -> list[Any]:
    async with unit_of_work(sessions) as session:
        result = await session.exec(text(statement).bindparams(**params))  # type: ignore[call-overload]
        return list(result.all()) if result.returns_rows else []


def _h(p: Patient, role: str, sub: str, org: str | None = None) -> dict[str, str]:
    return {
        "Authorization": "Bearer " + token(p.s, role=role, org=org or p.org, ics=p.s.ics, sub=sub)
    }


@pytest.fixture(scope="module")
async def patient(
    apis: dict[str, Api], settings: Settings, schema_sessions: dict[str, async_sessionmaker]
) -> Patient:
    svc = await new_service(settings, schema_sessions["referrals"])
    p = Patient(
        s=settings,
        apis=apis,
        sessions=schema_sessions,
        org=f"AUD-{uuid.uuid4().hex[:8].upper()}",
        svc_org=svc.org,
        svc_id=svc.id,
        nhs=synthetic_nhs_number(),
    )
    maker = _h(p, "clinician", f"maker-{uuid.uuid4().hex[:6]}")
    r = await p.client("referrals").post("/referrals", json=p.referral(), headers=maker)
    assert r.status_code == 201, r.text
    p.referral_id, p.pid = r.json()["id"], r.json()["patient_id"]
    await relate(settings, p.nhs, p.org, to_org=svc.org)
    r = await p.client("care_plans").post(
        "/care-plans",
        headers=maker,
        json={"nhs_number": p.nhs, "content": plan_content(), "reason": "first conversation"},
    )
    assert r.status_code == 201, r.text
    p.plan_id = r.json()["id"]
    r = await p.client("care_plans").post(
        f"/care-plans/{p.plan_id}/assessments",
        headers=maker,
        json={"instrument": "GAD-7", "answers": {str(i): 1 for i in range(1, 8)}},
    )
    assert r.status_code == 201, r.text
    p.assessment_id = r.json()["id"]

    notifications = schema_sessions["notifications"]
    partner = _h(p, "partner", f"partner-{uuid.uuid4().hex[:6]}")
    r = await p.client("notifications").post(
        "/webhook-subscriptions",
        headers=partner,
        json={"url": "http://127.0.0.1:9/hooks", "event_types": ["uk.waymark.referral.submitted"]},
    )
    assert r.status_code == 201, r.text
    p.subscription_id = r.json()["id"]
    await p.client("notifications").post(
        f"/webhook-subscriptions/{p.subscription_id}/pause", headers=partner
    )
    p.delivery_id = f"msg_{uuid.uuid4().hex}"
    await _sql(
        notifications,
        """
        INSERT INTO webhook_delivery (id, subscription_id, event_id, event_type, event_time,
            payload, status, attempts, created_at)
        VALUES (:id, :sid, :eid, 'uk.waymark.referral.submitted', now(), CAST(:p AS JSONB),
                'failed', 1, now())""",
        id=p.delivery_id,
        sid=p.subscription_id,
        eid=str(uuid.uuid4()),
        p=json.dumps({"subject": p.pid}),
    )
    p.index_referral_id = await index_referral(
        settings, notifications, patient_id=p.pid, from_org=p.org, to_org=svc.org
    )
    p.message_id = f"msg_{uuid.uuid4().hex}"
    await _sql(
        notifications,
        """
        INSERT INTO message (id, event_id, event_type, audience, template, patient_id,
                             referral_id, context, status, created_at, next_attempt_at)
        VALUES (:id, :e, 'uk.waymark.referral.accepted', 'referrer', 'referral-accepted',
                :pid, :r, '{}', 'sent', now(), now() + interval '1 day')""",
        id=p.message_id,
        e=str(uuid.uuid4()),
        pid=p.pid,
        r=p.index_referral_id,
    )
    p.inbox_owner = f"reader-{uuid.uuid4().hex[:6]}"
    p.inbox_item = f"inb_{uuid.uuid4().hex}"
    await _sql(
        notifications,
        "INSERT INTO inbox_item (id, owner, org, message_id, subject, "
        "body) VALUES (:id, :o, :org, :m, 'Referral accepted', 'body')",
        id=p.inbox_item,
        o=f"user:{p.inbox_owner}",
        org=p.org,
        m=p.message_id,
    )
    p.alert_id = await put_alert(settings, notifications, patient_id=p.pid)
    return p


# --- the cases: a call, and the entry it must leave -----------------------------------------

Call = Callable[[Patient, dict[str, str]], Awaitable[httpx.Response]]
#: (action, resource type, resource id, patient id) the call must have recorded
Expect = Callable[[Patient, httpx.Response], tuple[str, str, str, str | None]]


@dataclass(frozen=True)
class Case:
    service: str
    op: str  # "METHOD /template" as the router has it
    role: str
    call: Call
    expect: Expect
    org: str | None = None  # the caller's organisation: the patient's org unless named


def _get(
    service: str,
    url: Callable[[Patient], str],
    params: Callable[[Patient], dict[str, Any]] | None = None,
) -> Call:
    async def call(p: Patient, h: dict[str, str]) -> httpx.Response:
        return await p.client(service).get(url(p), headers=h, params=params(p) if params else None)

    return call


def _send(
    service: str,
    method: str,
    url: Callable[[Patient], str],
    body: Callable[[Patient], Any] | None = None,
    headers: Callable[[Patient], dict[str, str]] | None = None,
) -> Call:
    async def call(p: Patient, h: dict[str, str]) -> httpx.Response:
        return await p.client(service).request(
            method,
            url(p),
            json=body(p) if body else None,
            headers={**h, **(headers(p) if headers else {})},
        )

    return call


def _read(kind: str, rid: Callable[[Patient], str] = lambda p: p.referral_id) -> Expect:
    return lambda p, r: ("read", kind, rid(p), p.pid)


async def _fresh_referral(p: Patient, h: dict[str, str]) -> httpx.Response:
    r = await p.client("referrals").post("/referrals", json=p.referral(), headers=h)
    assert r.status_code == 201, r.text
    return await p.client("referrals").post(
        f"/referrals/{r.json()['id']}/cancel",
        headers={**h, "If-Match": 'W/"1"'},
        json={"reason_code": "patient-request"},
    )


def _service_request(p: Patient) -> dict[str, Any]:
    ext = "https://waymark.nhs.example/fhir/StructureDefinition/"
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": p.nhs}],
                "name": [{"family": "Synthetic", "given": ["Alex"]}],
                "birthDate": "1970-01-01",
            }
        ],
        "subject": {"reference": "#patient"},
        "extension": [{"url": ext + "consent-to-referral", "valueBoolean": True}],
        "performer": [
            {
                "identifier": {
                    "system": "https://waymark.nhs.example/fhir/Id/directory-service",
                    "value": p.svc_id,
                }
            }
        ],
        "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "279039007"}]}],
        "note": [{"text": "Low back pain, low mood."}],
    }


async def _etag(p: Patient) -> dict[str, str]:
    r = await p.client("care_plans").get(
        f"/care-plans/{p.plan_id}", headers=_h(p, "clinician", "etag-reader")
    )
    return {"If-Match": r.headers["etag"]}


async def _put_plan(p: Patient, h: dict[str, str]) -> httpx.Response:
    return await p.client("care_plans").put(
        f"/care-plans/{p.plan_id}",
        headers={**h, **await _etag(p)},
        json={"content": plan_content(what_matters_to_me="Sleeping."), "reason": "review"},
    )


async def _put_consent(p: Patient, h: dict[str, str]) -> httpx.Response:
    return await p.client("care_plans").put(
        f"/care-plans/{p.plan_id}/consent",
        headers={**h, **await _etag(p)},
        json={"organisations": [p.svc_org], "reason": "agreed at review"},
    )


async def _new_plan(p: Patient, h: dict[str, str]) -> httpx.Response:
    """A plan for a person the caller's organisation has just referred (its relationship)."""
    nhs = synthetic_nhs_number()
    await relate(p.s, nhs, p.org, to_org=p.svc_org)
    return await p.client("care_plans").post(
        "/care-plans", headers=h, json={"nhs_number": nhs, "content": plan_content()}
    )


async def _break_glass(p: Patient, h: dict[str, str]) -> httpx.Response:
    return await p.client("care_plans").post(
        "/care-plans/break-glass",
        headers=h,
        json={
            "nhs_number": p.nhs,
            "reason_code": "emergency-care",
            "reason": "collapsed in clinic",
        },
    )


def _alert_action(action: str, body: dict[str, Any] | None = None) -> Call:
    async def call(p: Patient, h: dict[str, str]) -> httpx.Response:
        alert = await put_alert(p.s, p.sessions["notifications"], patient_id=p.pid)
        p.scratch[action] = alert
        return await p.client("notifications").post(
            f"/alerts/{alert}/{action}", headers=h, json=body
        )

    return call


async def _dashboard_act(p: Patient, h: dict[str, str]) -> httpx.Response:
    alert = await put_alert(p.s, p.sessions["notifications"], patient_id=p.pid)
    p.scratch["dashboard"] = alert
    bearer = h["Authorization"].split(" ", 1)[1]
    return await p.client("notifications").post(
        f"/dashboard/alerts/{alert}/acknowledge",
        headers={**h, "Accept": "application/json"},
        data={"csrf": csrf_for(bearer)},
    )


def _created(kind: str) -> Expect:
    return lambda p, r: ("create", kind, r.json()["id"], r.json()["patient_id"])


R, C, N = "referrals", "care_plans", "notifications"
SOON = (datetime.now(UTC) + timedelta(days=2)).isoformat()

CASES: list[Case] = [
    # --- referrals
    Case(
        R,
        "POST /referrals",
        "clinician",
        _send(R, "POST", lambda p: "/referrals", lambda p: p.referral(synthetic_nhs_number())),
        _created("Referral"),
    ),
    Case(
        R,
        "GET /referrals",
        "clinician",
        _get(R, lambda p: "/referrals", lambda p: {"patient_id": p.pid}),
        _read("Referral"),
    ),
    Case(
        R,
        "GET /referrals/{referral_id}",
        "clinician",
        _get(R, lambda p: f"/referrals/{p.referral_id}"),
        _read("Referral"),
    ),
    Case(
        R,
        "GET /referrals/{referral_id}/history",
        "clinician",
        _get(R, lambda p: f"/referrals/{p.referral_id}/history"),
        _read("ReferralHistory"),
    ),
    Case(
        R,
        "GET /referrals/{referral_id}/message-context",
        "service",
        _get(R, lambda p: f"/referrals/{p.referral_id}/message-context"),
        _read("ReferralMessageContext"),
        org="WAYMARK",
    ),
    Case(
        R,
        "POST /referrals/{referral_id}/{action}",
        "clinician",
        _fresh_referral,
        lambda p, r: ("transition:cancel", "Referral", r.json()["id"], p.pid),
    ),
    Case(
        R,
        "GET /worklist",
        "service_staff",
        _get(R, lambda p: "/worklist"),
        _read("Referral"),
        org="svc",
    ),
    Case(
        R,
        "POST /fhir/ServiceRequest",
        "clinician",
        _send(R, "POST", lambda p: "/fhir/ServiceRequest", _service_request),
        lambda p, r: ("create", "Referral", r.json()["id"], p.pid),
    ),
    Case(
        R,
        "GET /fhir/ServiceRequest/{referral_id}",
        "clinician",
        _get(R, lambda p: f"/fhir/ServiceRequest/{p.referral_id}"),
        _read("ServiceRequest"),
    ),
    Case(
        R,
        "GET /fhir/ServiceRequest",
        "clinician",
        _get(
            R,
            lambda p: "/fhir/ServiceRequest",
            lambda p: {"patient": f"{NHS_NUMBER_SYSTEM}|{p.nhs}"},
        ),
        _read("ServiceRequest"),
    ),
    Case(
        R,
        "GET /fhir/Task/{referral_id}",
        "clinician",
        _get(R, lambda p: f"/fhir/Task/{p.referral_id}"),
        _read("Task"),
    ),
    # --- care plans
    Case(C, "POST /care-plans", "clinician", _new_plan, _created("CarePlan")),
    Case(
        C,
        "POST /care-plans/break-glass",
        "clinician",
        _break_glass,
        lambda p, r: ("break-glass", "CarePlan", r.json()["plan_id"], p.pid),
    ),
    Case(
        C,
        "GET /patients/{patient_id}/care-plan",
        "clinician",
        _get(C, lambda p: f"/patients/{p.pid}/care-plan"),
        _read("CarePlan", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /patients/{patient_id}/contact",
        "service",
        _get(C, lambda p: f"/patients/{p.pid}/contact"),
        _read("CarePlanContact", lambda p: p.plan_id),
        org="WAYMARK",
    ),
    Case(
        C,
        "GET /care-plans/{plan_id}",
        "clinician",
        _get(C, lambda p: f"/care-plans/{p.plan_id}"),
        _read("CarePlan", lambda p: p.plan_id),
    ),
    Case(
        C,
        "PUT /care-plans/{plan_id}",
        "clinician",
        _put_plan,
        lambda p, r: ("update", "CarePlan", p.plan_id, p.pid),
    ),
    Case(
        C,
        "PUT /care-plans/{plan_id}/consent",
        "clinician",
        _put_consent,
        lambda p, r: ("consent", "CarePlan", p.plan_id, p.pid),
    ),
    Case(
        C,
        "GET /care-plans/{plan_id}/versions",
        "clinician",
        _get(C, lambda p: f"/care-plans/{p.plan_id}/versions"),
        _read("CarePlanHistory", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /care-plans/{plan_id}/versions/{version}",
        "clinician",
        _get(C, lambda p: f"/care-plans/{p.plan_id}/versions/1"),
        _read("CarePlan", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /care-plans/{plan_id}/diff",
        "clinician",
        _get(C, lambda p: f"/care-plans/{p.plan_id}/diff", lambda p: {"from": 1, "to": 1}),
        _read("CarePlanHistory", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /care-plans/{plan_id}/crisis-plan",
        "clinician",
        _get(C, lambda p: f"/care-plans/{p.plan_id}/crisis-plan"),
        _read("CarePlanCrisis", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /patients/{patient_id}/crisis-plan",
        "clinician",
        _get(C, lambda p: f"/patients/{p.pid}/crisis-plan"),
        _read("CarePlanCrisis", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /care-plans/{plan_id}/summary",
        "clinician",
        _get(C, lambda p: f"/care-plans/{p.plan_id}/summary"),
        _read("CarePlanSummary", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /care-plans/{plan_id}/timeline",
        "clinician",
        _get(C, lambda p: f"/care-plans/{p.plan_id}/timeline"),
        _read("CarePlanTimeline", lambda p: p.plan_id),
    ),
    Case(
        C,
        "POST /care-plans/{plan_id}/assessments",
        "clinician",
        _send(
            C,
            "POST",
            lambda p: f"/care-plans/{p.plan_id}/assessments",
            lambda p: {"instrument": "GAD-7", "answers": {str(i): 0 for i in range(1, 8)}},
        ),
        lambda p, r: ("create", "Assessment", r.json()["id"], p.pid),
    ),
    Case(
        C,
        "GET /care-plans/{plan_id}/assessments",
        "clinician",
        _get(C, lambda p: f"/care-plans/{p.plan_id}/assessments"),
        _read("Assessment", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /care-plans/{plan_id}/assessments/{assessment_id}",
        "clinician",
        _get(C, lambda p: f"/care-plans/{p.plan_id}/assessments/{p.assessment_id}"),
        _read("Assessment", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /fhir/CarePlan/{plan_id}",
        "clinician",
        _get(C, lambda p: f"/fhir/CarePlan/{p.plan_id}"),
        _read("CarePlan", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /fhir/Goal/{goal_id}",
        "clinician",
        _get(C, lambda p: f"/fhir/Goal/{uuid.UUID(p.plan_id).hex}.walk"),
        _read("Goal", lambda p: p.plan_id),
    ),
    Case(
        C,
        "GET /fhir/QuestionnaireResponse/{assessment_id}",
        "clinician",
        _get(C, lambda p: f"/fhir/QuestionnaireResponse/{p.assessment_id}"),
        _read("QuestionnaireResponse", lambda p: p.plan_id),
    ),
    # --- notifications: alerts, the in-app inbox, the message log, the dashboard's pages
    Case(
        N,
        "GET /alerts",
        "coordinator",
        _get(N, lambda p: "/alerts", lambda p: {"patient_id": p.pid}),
        _read("Alert", lambda p: p.alert_id),
    ),
    Case(
        N,
        "GET /alerts/{alert_id}",
        "coordinator",
        _get(N, lambda p: f"/alerts/{p.alert_id}"),
        _read("Alert", lambda p: p.alert_id),
    ),
    Case(
        N,
        "POST /alerts/{alert_id}/acknowledge",
        "coordinator",
        _alert_action("acknowledge"),
        lambda p, r: ("alert:acknowledge", "Alert", p.scratch["acknowledge"], p.pid),
    ),
    Case(
        N,
        "POST /alerts/{alert_id}/assign",
        "coordinator",
        _alert_action("assign", {"assignee": "me"}),
        lambda p, r: ("alert:assign", "Alert", p.scratch["assign"], p.pid),
    ),
    Case(
        N,
        "POST /alerts/{alert_id}/snooze",
        "coordinator",
        _alert_action("snooze", {"until": SOON}),
        lambda p, r: ("alert:snooze", "Alert", p.scratch["snooze"], p.pid),
    ),
    Case(
        N,
        "POST /alerts/{alert_id}/resolve",
        "coordinator",
        _alert_action("resolve", {"resolution": "contacted-person"}),
        lambda p, r: ("alert:resolve", "Alert", p.scratch["resolve"], p.pid),
    ),
    Case(
        N,
        "GET /inbox",
        "clinician",
        _get(N, lambda p: "/inbox"),
        _read("InboxItem", lambda p: p.inbox_item),
        org="inbox",
    ),
    Case(
        N,
        "POST /inbox/{item_id}/read",
        "clinician",
        _send(N, "POST", lambda p: f"/inbox/{p.inbox_item}/read"),
        _read("InboxItem", lambda p: p.inbox_item),
        org="inbox",
    ),
    Case(
        N,
        "GET /messages",
        "clinician",
        _get(N, lambda p: "/messages", lambda p: {"referral_id": p.index_referral_id}),
        _read("Message", lambda p: p.message_id),
    ),
    Case(
        N,
        "GET /messages/{message_id}",
        "clinician",
        _get(N, lambda p: f"/messages/{p.message_id}"),
        _read("Message", lambda p: p.message_id),
    ),
    Case(
        N,
        "GET /dashboard/alerts",
        "coordinator",
        _get(N, lambda p: "/dashboard/alerts", lambda p: {"patient_id": p.pid}),
        _read("Alert", lambda p: p.alert_id),
    ),
    Case(
        N,
        "GET /dashboard/alert-rows/{alert_id:path}",
        "coordinator",
        _get(N, lambda p: f"/dashboard/alert-rows/{p.alert_id}"),
        _read("Alert", lambda p: p.alert_id),
    ),
    Case(
        N,
        "POST /dashboard/alerts/{alert_id:path}/{action}",
        "coordinator",
        _dashboard_act,
        lambda p, r: ("alert:acknowledge", "Alert", p.scratch["dashboard"], p.pid),
    ),
]

#: partner webhook deliveries: the event as it was sent to the partner (pseudonymous id, codes
#: and states); each read and resend is audited as an action on the delivery, without a
#: patient id (the entry names the delivery, whose payload names the patient)
EVENT_DATA: list[Case] = [
    Case(
        N,
        "GET /webhook-subscriptions/{subscription_id}/deliveries",
        "partner",
        _get(N, lambda p: f"/webhook-subscriptions/{p.subscription_id}/deliveries"),
        lambda p, r: ("read", "WebhookDelivery", p.subscription_id, None),
    ),
    Case(
        N,
        "GET /webhook-subscriptions/{subscription_id}/deliveries/{delivery_id}",
        "partner",
        _get(N, lambda p: f"/webhook-subscriptions/{p.subscription_id}/deliveries/{p.delivery_id}"),
        lambda p, r: ("read", "WebhookDelivery", p.delivery_id, None),
    ),
    Case(
        N,
        "POST /webhook-subscriptions/{subscription_id}/deliveries/{delivery_id}/resend",
        "partner",
        _send(
            N,
            "POST",
            lambda p: (
                f"/webhook-subscriptions/{p.subscription_id}/deliveries/{p.delivery_id}/resend"
            ),
        ),
        lambda p, r: ("resend", "WebhookDelivery", p.delivery_id, None),
    ),
    Case(
        N,
        "POST /webhook-subscriptions/{subscription_id}/resend",
        "partner",
        _send(
            N,
            "POST",
            lambda p: f"/webhook-subscriptions/{p.subscription_id}/resend",
            lambda p: {"since": "2000-01-01T00:00:00Z"},
        ),
        lambda p, r: ("resend", "WebhookDelivery", p.subscription_id, None),
    ),
]

#: patient data whose audit entry another test checks, because it needs the running stack
REFERENCED: dict[tuple[str, str], str] = {
    (N, "GET /alerts/stream"): "tests/notifications/alerts/test_live.py::"
    "test_a_new_alert_and_its_acknowledgement_reach_an_open_dashboard",
    (
        N,
        "GET /dashboard/alerts/{alert_id:path}",
    ): "tests/dashboard/pages/test_alerts.py::test_every_listed_alert_is_an_audited_read",
    # the integration service's historical import and the receiver's Task write-back: their
    # own tests check the audit entries (the import needs the integration's credential)
    (R, "POST /referrals/history"): "tests/referrals/api/test_history.py::"
    "test_the_import_is_audited_with_its_source",
    (
        R,
        "GET /referrals/history/{source_system}/{source_ref}",
    ): "tests/referrals/api/test_history.py::test_the_importer_reads_how_far_an_import_got",
    (R, "PUT /fhir/Task/{referral_id}"): "tests/referrals/api/test_fhir_task.py::"
    "test_a_task_status_moves_the_referral_through_the_state_machine",
    (R, "POST /fhir/Task"): "tests/referrals/api/test_fhir_task.py::"
    "test_post_with_based_on_updates_the_same_task",
    (R, "GET /fhir/Task"): "tests/referrals/api/test_fhir_task.py::"
    "test_based_on_finds_the_referrals_task",
    **{
        ("integration", op): "tests/integration/fhir/test_api.py::"
        "test_every_fhir_route_audits_each_contact_it_records"
        for op in (
            "POST /fhir/Encounter",
            "POST /fhir/Appointment",
            "POST /fhir",
            "POST /fhir/subscription-notification",
        )
    },
    **{
        ("integration", op): "tests/integration/fhir/test_api.py::"
        "test_the_location_reads_back_the_contact_and_the_read_is_audited"
        for op in (
            "GET /fhir/Encounter/{encounter_id}",
            "GET /fhir/Encounter/{encounter_id}/_history/{version}",
        )
    },
    ("integration", "POST /dead-letters/{letter_id}/redrive"): "tests/integration/fhir/"
    "test_api.py::test_an_unmappable_encounter_is_kept_as_a_dead_letter_and_can_be_redriven",
    ("integration", "POST /dead-letters/{letter_id}/discard"): "tests/integration/fhir/"
    "test_api.py::test_a_discarded_dead_letter_is_audited",
    # the minimal Patient a Task.for or CarePlan.subject resolves to (the pseudonym only)
    (R, "GET /fhir/Patient/{patient_id}"): "tests/referrals/api/test_fhir_discovery.py::"
    "test_task_for_resolves_to_a_minimal_patient",
    (C, "GET /fhir/Patient/{patient_id}"): "tests/care_plans/test_fhir_discovery.py::"
    "test_care_plan_subject_resolves_to_a_minimal_patient",
}

#: routes that read or write no patient data, and why
NOT_PATIENT_DATA: dict[tuple[str, str], str] = {
    **{
        (s, op): "FastAPI's description of the API"
        for s in ("referrals", "directory", "care_plans", "notifications", "integration")
        for op in ("GET /openapi.json", "GET /docs", "GET /docs/oauth2-redirect", "GET /redoc")
    },
    **{
        (s, "GET /health"): "the liveness probe"
        for s in ("referrals", "directory", "care_plans", "notifications", "integration")
    },
    **{
        ("integration", op): "the ICS's registered source systems and their message counts "
        "(every change audited: services/integration/api.py)"
        for op in ("GET /sources", "PUT /sources/{source_id}", "GET /status")
    },
    ("integration", "GET /dead-letters"): "why messages were refused, by id: never their "
    "content (services/integration/schemas.py DeadLetterOut)",
    (C, "GET /fhir/Questionnaire/{questionnaire_id}"): "a published questionnaire definition",
    (C, "GET /fhir/Questionnaire"): "the published questionnaire definitions",
    **{
        (s, op): "a FHIR base's discovery: what it serves, where tokens come from (issue #19)"
        for s in ("referrals", "care_plans", "integration")
        for op in ("GET /fhir/metadata", "GET /fhir/.well-known/smart-configuration")
    },
    (N, "GET /alerts/counts"): "counts of the inbox's alerts (audited, with no patient)",
    (N, "GET /preferences/me"): "the signed-in user's own preferences",
    (N, "PUT /preferences/me"): "the signed-in user's own preferences",
    **{
        (N, op): "a partner's subscription settings (every change audited; "
        "tests/notifications/webhooks/test_api.py)"
        for op in (
            "GET /webhook-subscriptions",
            "POST /webhook-subscriptions",
            "GET /webhook-subscriptions/{subscription_id}",
            "PATCH /webhook-subscriptions/{subscription_id}",
            "DELETE /webhook-subscriptions/{subscription_id}",
            "POST /webhook-subscriptions/{subscription_id}/pause",
            "POST /webhook-subscriptions/{subscription_id}/resume",
            "POST /webhook-subscriptions/{subscription_id}/rotate-secret",
        )
    },
    **{
        (N, op): "an organisation's partner systems' OAuth clients (every change audited; "
        "tests/notifications/clients/test_api.py)"
        for op in (
            "GET /partner-clients/scopes",
            "POST /partner-clients",
            "GET /partner-clients",
            "GET /partner-clients/{client_key}",
            "POST /partner-clients/{client_key}/secret",
            "DELETE /partner-clients/{client_key}",
            "GET /dashboard/partner-clients",
            "POST /dashboard/partner-clients",
            "POST /dashboard/partner-clients/{client_key}/rotate",
            "POST /dashboard/partner-clients/{client_key}/revoke",
        )
    },
    **{
        (N, op): "the dashboard's sign-in, assets, navigation and ICS-wide figures"
        for op in (
            "GET /dashboard",
            "GET /dashboard/login",
            "GET /dashboard/auth/callback",
            "GET /dashboard/signed-out",
            "POST /dashboard/logout",
            "GET /dashboard/static/{name}",
            "GET /dashboard/directory",
            "GET /dashboard/overview",
            "GET /dashboard/{rest:path}",
            "POST /dashboard/{rest:path}",
        )
    },
    **{
        (N, op): "a page that reads through the referrals API with the user's own token, "
        "which audits the read (the referrals rows above)"
        for op in ("GET /dashboard/referrals/{referral_id}", "GET /dashboard/worklist")
    },
}


def _directory_ops() -> set[tuple[str, str]]:
    from services.directory.api import app

    return {("directory", op.key) for op in operations("directory", app)}


def test_every_route_is_classified(apis: dict[str, Api]) -> None:
    every = {(name, op.key) for name, api in apis.items() for op in operations(name, api.app)}
    tested = {(c.service, c.op) for c in CASES + EVENT_DATA}
    # the directory holds services and organisations, never people: none of its routes
    # takes a patient, referral or plan
    directory = _directory_ops() - set(NOT_PATIENT_DATA)
    for _, op in directory:
        assert not re.search(r"patient|referral|plan|nhs", op), op
    classified = [tested, set(REFERENCED), set(NOT_PATIENT_DATA), directory]
    union = set().union(*classified)
    assert every == union, (
        f"not classified: {sorted(every - union)}; no such route: {sorted(union - every)}"
    )
    assert sum(len(c) for c in classified) == len(union), "a route is classified twice"
    for where in REFERENCED.values():
        path, _, name = where.partition("::")
        assert f"def {name}(" in (ROOT / path).read_text(), where


async def _now(sessions: async_sessionmaker) -> datetime:
    return (await _sql(sessions, "SELECT clock_timestamp()"))[0][0]  # type: ignore[no-any-return]


async def _audited(p: Patient, case: Case) -> str | None:
    """Call `case` as a user of its own and check its audit entries; what is wrong, or None."""
    sub = f"aud-{case.role}-{uuid.uuid4().hex[:8]}"
    if case.op.startswith(("GET /inbox", "POST /inbox")):
        sub = p.inbox_owner
    org = {None: p.org, "svc": p.svc_org, "inbox": p.org}.get(case.org) or str(case.org)
    sessions = p.sessions[case.service]
    before = await _now(sessions)
    r = await case.call(p, _h(p, case.role, sub, org))
    after = await _now(sessions)
    if r.status_code >= 400:
        return f"{r.status_code}: {r.text[:200]}"
    want = case.expect(p, r)
    rows = await _sql(
        sessions,
        "SELECT * FROM audit_log WHERE actor = :a AND at >= :t ORDER BY at",
        a=sub,
        t=before,
    )
    if not rows:
        return "no audit entry"
    for row in rows:
        if (row.actor_org, row.actor_roles) != (org, case.role):
            return f"who is wrong: {row.actor_org}, {row.actor_roles}"
        if not before <= row.at <= after:
            return f"when is wrong: {row.at} not within {before}..{after}"
        if row.client_ip != "127.0.0.1":
            return f"from where is wrong: {row.client_ip}"
    got = [(row.action, row.resource_type, row.resource_id, row.patient_id) for row in rows]
    if want not in got:
        return f"no entry {want}; the entries are {got}"
    return None


async def test_every_read_and_write_of_patient_data_is_audited(patient: Patient) -> None:
    failures = []
    for case in CASES:
        if (why := await _audited(patient, case)) is not None:
            failures.append(f"{case.service} {case.op}: {why}")
    print(
        f"\naudit: {len(CASES)} patient-data routes of 3 services called, each audited "
        "with who, what, when and the patient"
    )
    assert not failures, "\n".join(failures)


async def test_partner_deliveries_are_audited_as_actions_on_the_delivery(patient: Patient) -> None:
    failures = []
    for case in EVENT_DATA:
        if (why := await _audited(patient, case)) is not None:
            failures.append(f"{case.op}: {why}")
    assert not failures, "\n".join(failures)


# --- nothing can alter the log ----------------------------------------------------------------


def test_no_route_of_any_api_writes_an_audit_resource(apis: dict[str, Api]) -> None:
    writes = [
        (name, op.key)
        for name, api in apis.items()
        for op in operations(name, api.app)
        if op.method in WRITE_METHODS
    ]
    assert len(writes) > 20  # the enumeration found the APIs' writes
    on_audit = [w for w in writes if "audit" in w[1].lower()]
    assert on_audit == []


def test_no_code_updates_deletes_or_truncates_the_audit_log() -> None:
    """Only `shared.audit.record_audit` makes entries, and nothing else touches the table."""
    statement = re.compile(r"(UPDATE|DELETE\s+FROM|TRUNCATE(\s+TABLE)?)\s+[\w.\"]*audit_log", re.I)
    offenders, makers = [], []
    for base in ("shared", "services", "workflows"):
        for path in (ROOT / base).rglob("*.py"):
            source = path.read_text()
            if "/migrations/" not in str(path) and statement.search(source):
                offenders.append(str(path.relative_to(ROOT)))
            if re.search(r"(?<!class )AuditEntry\(", source) and path.name != "audit.py":
                makers.append(str(path.relative_to(ROOT)))
    assert offenders == [] and makers == []


@pytest.mark.parametrize("schema", SERVICE_SCHEMAS)
async def test_the_database_refuses_to_change_or_remove_audit_entries(
    schema: str, infra: Settings
) -> None:
    # as the migration owner: a service's own role may not even try (no UPDATE, DELETE or
    # TRUNCATE privilege, tests/security/test_db_roles.py); the triggers stop the owner too
    engine = create_async_engine(
        infra.database_url, pool_size=1, connect_args={"server_settings": {"search_path": schema}}
    )
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    try:
        await _owner_cannot_change_audit(schema, sessions)
    finally:
        await engine.dispose()


async def _owner_cannot_change_audit(schema: str, sessions: async_sessionmaker) -> None:
    entry = str(uuid.uuid4())
    await _sql(
        sessions,
        "INSERT INTO audit_log (id, actor, actor_org, actor_roles, action, "
        "resource_type, patient_id) VALUES (CAST(:id AS uuid), 'probe', "
        "'ORG-1', 'clinician', 'read', 'Probe', 'pt_probe')",
        id=entry,
    )
    for statement, operation in [
        ("UPDATE audit_log SET actor = 'someone else' WHERE id = CAST(:id AS uuid)", "UPDATE"),
        ("DELETE FROM audit_log WHERE id = CAST(:id AS uuid)", "DELETE"),
        ("TRUNCATE audit_log", "TRUNCATE"),
    ]:
        with pytest.raises(DBAPIError) as refused:
            await _sql(sessions, statement, **({"id": entry} if ":id" in statement else {}))
        assert f"audit_log is append-only: {operation} refused" in str(refused.value)
    [row] = await _sql(
        sessions, "SELECT actor FROM audit_log WHERE id = CAST(:id AS uuid)", id=entry
    )
    assert row.actor == "probe"
    triggers = await _sql(
        sessions,
        "SELECT tgname FROM pg_trigger t JOIN pg_class c ON "
        "c.oid = t.tgrelid JOIN pg_namespace n ON "
        "n.oid = c.relnamespace WHERE c.relname = 'audit_log' "
        "AND n.nspname = :s AND NOT t.tgisinternal",
        s=schema,
    )
    assert {t.tgname for t in triggers} == {"audit_log_no_change", "audit_log_no_truncate"}
