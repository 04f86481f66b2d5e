"""Who may do what, across the four services, in one table: every role × an endpoint of each
kind of data (referrals, care plans, directory entries, partner webhooks and their deliveries,
the message log, alerts) × the caller's organisation (the one that owns the data, another of
the same ICS, another of another ICS), on the real database.

One organisation, A, owns everything in the world below: it referred the patient (referrals),
holds their care plan with nobody else consented (care plans), runs a service still in draft
(directory), subscribed a partner webhook with a delivery owed (notifications), and is the
referrer of a referral whose message is in the delivery log; the patient has an open alert in
the ICS this deployment serves. Each cell calls one endpoint as one role of one relation and
checks the status against POLICY, which is generated from the one role table
(shared/access.py: role x capability -> the relationships that allow it) and the
relationships A's data has to a caller of each relation (PERSON, ORGANISATION); lists and
searches must show A's item exactly when the matching read would succeed (an exact
total: 0 when not, counts and X-Total-Count included); and no refusal, and no list without
A's item, may carry A's data: the patient's NHS number or name, the plan's words, the
webhook's URL, the message's or delivery's content, A's code.

Per-service tests go deeper on their own service (tests/referrals/test_access_matrix.py: every
referrals endpoint × relation; tests/notifications/webhooks/test_api.py TestPartnerIsolation;
tests/care_plans/api/test_plans.py consent; tests/notifications/messages/test_api.py the delivery
log). This table is the one view across services.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.care_plans.domain.access import CARE_TEAM
from services.directory.domain import organization_id_for
from services.integration.models import DeadLetter, SourceSystem
from services.notifications.dashboard.session import csrf_for
from shared.access import (
    Capability,
    Principal,
    Relationship,
    Role,
    may_use,
    permits,
    relationships_for,
)
from shared.auth import mint_token
from shared.db import unit_of_work
from shared.errors import PROBLEM_JSON
from shared.fhir import NHS_NUMBER_SYSTEM
from shared.settings import Settings
from tests.care_plans.support import plan_content
from tests.conftest import auth
from tests.helpers import referral_body, relate, synthetic_nhs_number
from tests.integration.fhir.support import encounter
from tests.notifications.alert_support import index_referral, put_alert
from tests.referrals.support import new_service
from tests.security.conftest import Api
from tests.security.support import FHIR_JSON, media_type

ROLES = [r.value for r in Role]
RELATIONS = ["own", "other", "other-ics"]
C, R = Capability, Relationship

#: what A's data is to a caller of each relation, as the services can show it. A referred the
#: person and holds their plan; "other" is another organisation of the same ICS (the ICS this
#: deployment serves, the person's); "other-ics" an organisation of another ICS.
PERSON = {
    "own": {R.REFERRAL, R.PLAN_HOLDER, R.ICS_COORDINATION, R.SAME_ICS},
    "other": {R.ICS_COORDINATION, R.SAME_ICS},
    "other-ics": set(),
}
ORGANISATION = {
    "own": {R.OWN_ORGANISATION, R.SAME_ICS, R.ANYONE},
    "other": {R.SAME_ICS, R.ANYONE},
    "other-ics": {R.ANYONE},
}


def who(role: str, relation: str) -> Principal:
    return Principal(
        user="u",
        roles=frozenset({Role(role)}),
        org="X",
        ics="ICS-1" if relation != "other-ics" else "ICS-OTHER",
    )


Expect = Callable[[Principal, str], int]


def read(cap: Capability, *, absent: int = 404, ok: int = 200) -> Expect:
    """A read of one of A's things: allowed by the table, or the answer an unknown id gets."""
    return lambda p, rel: ok if permits(p, cap, PERSON[rel]) else absent


def listing(cap: Capability) -> Expect:
    """A list or search: any role that may read such things gets a (scoped) list."""
    return lambda p, rel: 200 if may_use(p, cap) else 403


def act(cap: Capability, readable: Capability, ok: int = 200) -> Expect:
    """A change: allowed; or refused, saying so, to those who may see the thing; else 404."""

    def expect(p: Principal, rel: str) -> int:
        if permits(p, cap, PERSON[rel]):
            return ok
        return 403 if permits(p, readable, PERSON[rel]) else 404

    return expect


def plan(cap: Capability, ok: int = 200) -> Expect:
    """Care plans: a role that never may is told so at once; a care-team member without the
    relationship that allows it hears why (403); anyone else gets the 404 of no plan."""

    def expect(p: Principal, rel: str) -> int:
        if not may_use(p, cap):
            return 403
        if permits(p, cap, PERSON[rel]):
            return ok
        return 403 if PERSON[rel] & CARE_TEAM else 404

    return expect


def machine(cap: Capability) -> Expect:
    return lambda p, rel: 200 if may_use(p, cap) else 403


def organisation(cap: Capability, *, ok: int = 200, absent: int = 403) -> Expect:
    return lambda p, rel: ok if permits(p, cap, ORGANISATION[rel]) else absent


def public() -> Expect:
    """The directory's Open Referral UK feed: published directory data, read by anyone, with
    or without a token, while `oruk_public` is on (the default; its off switch and the call
    with no Authorization at all: tests/directory/oruk/test_profile.py::TestPublicAccess)."""
    return lambda p, rel: 200


def owned(cap: Capability, ok: int = 200) -> Expect:
    """An organisation's own thing (a webhook subscription): a role that never may is told so;
    another organisation's is a 404."""

    def expect(p: Principal, rel: str) -> int:
        if not may_use(p, cap):
            return 403
        return ok if permits(p, cap, ORGANISATION[rel]) else 404

    return expect


def deployment_ics(cap: Capability, ok: int = 200) -> Expect:
    """The coordinators' inbox serves the deployment's ICS."""
    return lambda p, rel: ok if may_use(p, cap) and rel != "other-ics" else 403


def message_log(single: bool) -> Expect:
    def expect(p: Principal, rel: str) -> int:
        through = relationships_for(p, C.MESSAGE_LOG_READ)
        if R.ICS_COORDINATION in through and rel != "other-ics":
            return 200
        if R.REFERRAL in through:
            return 200 if not single or R.REFERRAL in PERSON[rel] else 404
        return 403

    return expect


#: each endpoint's expectation, generated from shared/access.py's one role table
EXPECT: dict[str, Expect] = {
    "referrals GET /referrals/{id}": read(C.REFERRAL_READ),
    "referrals GET /referrals/{id}/history": read(C.REFERRAL_READ),
    "referrals GET /referrals?patient_id=": listing(C.REFERRAL_READ),
    "referrals POST /referrals/{id}/cancel": act(C.REFERRAL_ACT, C.REFERRAL_READ),
    "referrals GET /referrals/{id}/message-context": machine(C.MESSAGE_CONTEXT_READ),
    "referrals GET /fhir/ServiceRequest/{id}": read(C.REFERRAL_READ),
    "referrals GET /fhir/ServiceRequest?patient=": listing(C.REFERRAL_READ),
    "referrals GET /fhir/Task/{id}": read(C.REFERRAL_READ),
    "care_plans GET /care-plans/{id}": plan(C.CARE_PLAN_READ),
    "care_plans GET /patients/{pid}/care-plan": plan(C.CARE_PLAN_READ),
    "care_plans GET /care-plans/{id}/timeline": plan(C.CARE_PLAN_READ),
    "care_plans GET /care-plans/{id}/assessments": plan(C.CARE_PLAN_READ),
    "care_plans GET /fhir/CarePlan/{id}": plan(C.CARE_PLAN_READ),
    "care_plans PUT /care-plans/{id}": plan(C.CARE_PLAN_WRITE),
    "care_plans POST /care-plans/{id}/assessments": plan(C.CARE_PLAN_WRITE, ok=201),
    "care_plans GET /patients/{pid}/contact": machine(C.PATIENT_CONTACT_READ),
    "directory GET /organizations/{org}": organisation(C.DIRECTORY_READ),
    "directory PUT /organizations/{org}": organisation(C.DIRECTORY_MANAGE),
    "directory GET /services/{draft}": organisation(C.DIRECTORY_MANAGE, absent=404),
    "directory PATCH /services/{draft}": organisation(C.DIRECTORY_MANAGE, absent=404),
    "directory GET /oruk/services?organization_id=": public(),
    "notifications GET /webhook-subscriptions": machine(C.WEBHOOKS_MANAGE),
    "notifications GET /webhook-subscriptions/{id}": owned(C.WEBHOOKS_MANAGE),
    "notifications PATCH /webhook-subscriptions/{id}": owned(C.WEBHOOKS_MANAGE),
    "notifications DELETE /webhook-subscriptions/{id}": owned(C.WEBHOOKS_MANAGE, ok=204),
    "notifications GET /webhook-subscriptions/{id}/deliveries": owned(C.WEBHOOKS_MANAGE),
    "notifications GET /webhook-subscriptions/{id}/deliveries/{d}": owned(C.WEBHOOKS_MANAGE),
    "notifications POST /webhook-subscriptions/{id}/deliveries/{d}/resend": owned(
        C.WEBHOOKS_MANAGE
    ),
    "notifications GET /messages?referral_id=": message_log(single=False),
    "notifications GET /messages/{id}": message_log(single=True),
    "notifications GET /partner-clients": machine(C.CLIENTS_MANAGE),
    "notifications GET /partner-clients/{id}": owned(C.CLIENTS_MANAGE),
    "notifications DELETE /partner-clients/{id}": owned(C.CLIENTS_MANAGE),
    "notifications GET /alerts/{id}": deployment_ics(C.ALERT_READ),
    "notifications POST /alerts/{id}/acknowledge": deployment_ics(C.ALERT_ACT),
    "dashboard GET /dashboard/alerts?patient_id=": deployment_ics(C.ALERT_READ),
    "dashboard POST /dashboard/alerts/{id}/acknowledge": deployment_ics(C.ALERT_ACT),
    "dashboard GET /dashboard/overview": deployment_ics(C.FIGURES_READ),
    "integration GET /sources": deployment_ics(C.INTEGRATION_MANAGE),
    "integration PUT /sources/{id}": deployment_ics(C.INTEGRATION_MANAGE),
    "integration GET /status": deployment_ics(C.INTEGRATION_MANAGE),
    "integration GET /dead-letters": deployment_ics(C.INTEGRATION_MANAGE),
    "integration POST /fhir/Encounter": organisation(C.CONTACTS_SUBMIT, ok=201),
    "integration GET /fhir/Encounter/{id}": organisation(C.CONTACTS_SUBMIT),
    "integration POST /dead-letters/{id}/redrive": deployment_ics(C.INTEGRATION_MANAGE),
    "integration POST /dead-letters/{id}/discard": deployment_ics(C.INTEGRATION_MANAGE, ok=204),
}

#: endpoints anyone may read, token or not: no capability, so no scope to refuse
PUBLIC = {"directory GET /oruk/services?organization_id="}

#: the policy each cell is checked against: role -> (own, other, other-ics)
POLICY: dict[str, dict[str, tuple[int, int, int]]] = {
    endpoint: {
        role: tuple(expect(who(role, rel), rel) for rel in RELATIONS)  # type: ignore[misc]
        for role in ROLES
    }
    for endpoint, expect in EXPECT.items()
}


#: lists and searches: the read whose success means the list shows A's item in that cell
LISTS_LIKE = {
    "referrals GET /referrals?patient_id=": "referrals GET /referrals/{id}",
    "referrals GET /fhir/ServiceRequest?patient=": "referrals GET /referrals/{id}",
    "notifications GET /webhook-subscriptions": "notifications GET /webhook-subscriptions/{id}",
    "notifications GET /webhook-subscriptions/{id}/deliveries": (
        "notifications GET /webhook-subscriptions/{id}/deliveries/{d}"
    ),
    "notifications GET /messages?referral_id=": "notifications GET /messages/{id}",
    "notifications GET /partner-clients": "notifications GET /partner-clients/{id}",
}


def _code(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


@dataclass
class World:
    """Organisation A's data in every service (see the module's docstring)."""

    s: Settings
    apis: dict[str, Api]
    notifications_sessions: async_sessionmaker
    ics: str
    org: str
    svc_org: str
    svc_id: str
    nhs: str
    family_name: str
    patient_id: str
    referral_id: str
    plan_id: str
    draft_id: str
    subscription_id: str
    delivery_id: str
    index_referral_id: str
    message_id: str
    alert_id: str
    marker: str  # a word only A's data holds (plan, webhook URL, message, delivery)
    integration_sessions: async_sessionmaker | None = None
    source_id: str = ""  # A's FHIR source system
    client_id: str = ""  # the client id its tokens carry
    encounter_id: str = ""  # a contact it sent
    partner_client: str = ""  # a partner system's client it recorded
    fresh: str = ""  # the resource of its own a write cell changes (see FRESH)

    def a(self, role: str, sub: str | None = None) -> dict[str, str]:
        return auth(self.s, role=role, org=self.org, ics=self.ics, sub=sub)

    def caller(self, role: str, relation: str, sub: str | None = None) -> dict[str, str]:
        if relation == "own":
            return self.a(role, sub)
        ics = self.ics if relation == "other" else _code("ICS")
        return auth(self.s, role=role, org=_code("OTH"), ics=ics, sub=sub)

    def client(self, service: str) -> httpx.AsyncClient:
        # the coordinators' dashboard is pages of the notifications app
        return self.apis["notifications" if service == "dashboard" else service].client

    def secrets(self, service: str, relation: str) -> list[str]:
        """What of A's a refused caller must never see. The directory is public (A's code is
        on every one of its entries), so its refusals may name A."""
        out = [self.nhs, self.family_name, self.marker, self.patient_id]
        # the dashboard's pages name the signed-in user's own organisation (A's, for A's users)
        public = service == "directory" or (service == "dashboard" and relation == "own")
        return out if public else [*out, self.org]


async def _sql(sessions: async_sessionmaker, statement: str, **params: Any) -> list[Any]:
    async with unit_of_work(sessions) as session:
        result = await session.exec(text(statement).bindparams(**params))  # type: ignore[call-overload]
        return list(result.all()) if result.returns_rows else []


async def _subscription(w: World) -> str:
    """A paused subscription of A's (nothing is sent while the tests look at it)."""
    client, partner = w.client("notifications"), w.a("partner")
    r = await client.post(
        "/webhook-subscriptions",
        headers=partner,
        json={
            "url": f"http://127.0.0.1:9/hooks/{w.marker}",
            "description": f"A's hook {w.marker}",
            "event_types": ["uk.waymark.referral.submitted"],
        },
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    r = await client.post(f"/webhook-subscriptions/{sid}/pause", headers=partner)
    assert r.status_code == 200, r.text
    return str(sid)


async def _referral(w: World) -> dict[str, Any]:
    body = referral_body(to_service_id=w.svc_id, to_org=w.svc_org)
    body["patient"].update(nhs_number=w.nhs, family_name=w.family_name)
    r = await w.client("referrals").post("/referrals", json=body, headers=w.a("clinician"))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def world(
    apis: dict[str, Api],
    settings: Settings,
    referrals_sessions: async_sessionmaker,
    notifications_sessions: async_sessionmaker,
    integration_sessions: async_sessionmaker,
) -> World:
    org, marker = _code("A"), f"marker{uuid.uuid4().hex[:10]}"
    svc = await new_service(settings, referrals_sessions)
    w = World(
        s=settings,
        apis=apis,
        notifications_sessions=notifications_sessions,
        ics=settings.ics,
        org=org,
        svc_org=svc.org,
        svc_id=svc.id,
        nhs=synthetic_nhs_number(),
        family_name=f"Matrix-{uuid.uuid4().hex[:8]}",
        patient_id="",
        referral_id="",
        plan_id="",
        draft_id="",
        subscription_id="",
        delivery_id="",
        index_referral_id="",
        message_id="",
        alert_id="",
        marker=marker,
    )
    referral = await _referral(w)
    w.referral_id, w.patient_id = referral["id"], referral["patient_id"]

    # A's referral as the care plans consumer applies it: A's care relationship with the person
    await relate(settings, w.nhs, org, to_org=svc.org)
    r = await w.client("care_plans").post(
        "/care-plans",
        headers=w.a("clinician"),
        json={
            "nhs_number": w.nhs,
            "content": plan_content(what_matters_to_me=f"The {marker}."),
            "consented_organisations": [],
            "reason": "first conversation",
        },
    )
    assert r.status_code == 201, r.text
    w.plan_id = r.json()["id"]
    assert r.json()["patient_id"] == w.patient_id  # one pseudonym for one person

    staff = w.a("service_staff")
    r = await w.client("directory").put(
        f"/organizations/{org}", headers=staff, json={"name": f"Organisation {org}"}
    )
    assert r.status_code == 201, r.text
    w.draft_id = f"svc-{uuid.uuid4().hex[:12]}"
    r = await w.client("directory").post(
        "/services",
        headers=staff,
        json={
            "id": w.draft_id,
            "name": "Matrix physiotherapy",
            "description": "A draft.",
            "category": "msk_physiotherapy",
            "conditions": ["persistent_pain"],
            "delivery_modes": ["phone"],
            "how_to_refer": "Through Waymark.",
        },
    )
    assert r.status_code == 201, r.text

    w.subscription_id = await _subscription(w)
    w.delivery_id = f"msg_{uuid.uuid4().hex}"
    await _sql(
        notifications_sessions,
        """
        INSERT INTO webhook_delivery (id, subscription_id, event_id, event_type, event_time,
            payload, status, attempts, created_at)
        VALUES (:id, :sid, :eid, 'uk.waymark.referral.submitted', now(), CAST(:p AS JSONB),
                'failed', 1, now())""",
        id=w.delivery_id,
        sid=w.subscription_id,
        eid=str(uuid.uuid4()),
        p=json.dumps(
            {
                "type": "uk.waymark.referral.submitted",
                "subject": w.patient_id,
                "data": {"from_org": org, "note": marker},
            }
        ),
    )

    w.index_referral_id = await index_referral(
        settings, notifications_sessions, patient_id=w.patient_id, from_org=org, to_org=svc.org
    )
    w.message_id = f"msg_{uuid.uuid4().hex}"
    await _sql(
        notifications_sessions,
        """
        INSERT INTO message (id, event_id, event_type, audience, template, patient_id,
                             referral_id, context, status, created_at, next_attempt_at)
        VALUES (:id, :e, 'uk.waymark.referral.accepted', 'referrer', 'referral-accepted',
                :pid, :r, CAST(:ctx AS JSONB), 'sent', now(), now() + interval '1 day')""",
        id=w.message_id,
        e=str(uuid.uuid4()),
        pid=w.patient_id,
        r=w.index_referral_id,
        ctx=json.dumps({"referral_id": w.index_referral_id, "note": marker}),
    )
    w.alert_id = await put_alert(settings, notifications_sessions, patient_id=w.patient_id)

    # A's FHIR source system, which sends A's contacts
    w.integration_sessions = integration_sessions
    w.source_id, w.client_id = f"src-{marker.lower()}", f"client-{marker}"
    async with unit_of_work(integration_sessions) as session:
        session.add(
            SourceSystem(
                id=w.source_id,
                name=f"A's shared care record {marker}",
                org_code=org,
                channel="fhir",
                client_id=w.client_id,
            )
        )
    r = await _post_encounter(w, w.a("partner", w.client_id))
    assert r.status_code == 201, r.text
    w.encounter_id = r.json()["id"]
    w.partner_client = await _partner_client(w)
    return w


async def _partner_client(w: World) -> str:
    """A partner system's client of A's, registered at the provider by hand and recorded (the
    onboarding tests register at the real provider: tests/notifications/clients)."""
    r = await w.client("notifications").post(
        "/partner-clients",
        headers=w.a("admin"),
        json={
            "name": f"A's booking system {w.marker}",
            "scopes": ["referral.read"],
            "client_id": f"manual-{uuid.uuid4().hex[:10]}",
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


# --- calling each endpoint ------------------------------------------------------------------

Call = Callable[[World, dict[str, str]], Awaitable[httpx.Response]]


async def _plan_version(w: World) -> str:
    r = await w.client("care_plans").get(f"/care-plans/{w.plan_id}", headers=w.a("clinician"))
    return r.headers["etag"]


async def _subscription_version(w: World, sid: str) -> str:
    r = await w.client("notifications").get(f"/webhook-subscriptions/{sid}", headers=w.a("partner"))
    return r.headers["etag"]


def _new() -> str:
    return uuid.uuid4().hex[:8]


async def _cancel(w: World, h: dict[str, str]) -> httpx.Response:
    return await w.client("referrals").post(
        f"/referrals/{w.fresh}/cancel",
        headers={**h, "If-Match": 'W/"1"'},
        json={"reason_code": "patient-request"},
    )


async def _put_plan(w: World, h: dict[str, str]) -> httpx.Response:
    return await w.client("care_plans").put(
        f"/care-plans/{w.plan_id}",
        headers={**h, "If-Match": await _plan_version(w)},
        json={
            "content": plan_content(what_matters_to_me=f"The {w.marker}, {_new()}."),
            "reason": "reviewed",
        },
    )


async def _patch_subscription(w: World, h: dict[str, str]) -> httpx.Response:
    sid = w.subscription_id
    return await w.client("notifications").patch(
        f"/webhook-subscriptions/{sid}",
        json={"description": f"A's hook {w.marker} {_new()}"},
        headers={**h, "If-Match": await _subscription_version(w, sid)},
    )


async def _delete_subscription(w: World, h: dict[str, str]) -> httpx.Response:
    return await w.client("notifications").delete(f"/webhook-subscriptions/{w.fresh}", headers=h)


async def _acknowledge(w: World, h: dict[str, str]) -> httpx.Response:
    return await w.client("notifications").post(f"/alerts/{w.fresh}/acknowledge", headers=h)


def _get(
    service: str,
    path: Callable[[World], str],
    params: Callable[[World], dict[str, str]] | None = None,
) -> Call:
    async def call(w: World, h: dict[str, str]) -> httpx.Response:
        return await w.client(service).get(path(w), headers=h, params=params(w) if params else None)

    return call


def _post(service: str, path: Callable[[World], str], body: dict[str, Any] | None = None) -> Call:
    async def call(w: World, h: dict[str, str]) -> httpx.Response:
        return await w.client(service).post(path(w), headers=h, json=body)

    return call


async def _dashboard_acknowledge(w: World, h: dict[str, str]) -> httpx.Response:
    """The dashboard's button, as a page behind a sign-in proxy sends it (bearer header, the
    page's CSRF token), asking for JSON as the page's script does."""
    token = h["Authorization"].split(" ", 1)[1]
    return await w.client("dashboard").post(
        f"/dashboard/alerts/{w.fresh}/acknowledge",
        data={"csrf": csrf_for(token)},
        headers={**h, "Accept": "application/json"},
    )


async def _put_source(w: World, h: dict[str, str]) -> httpx.Response:
    return await w.client("integration").put(
        f"/sources/{w.source_id}",
        headers=h,
        json={
            "id": w.source_id,
            "name": f"A's shared care record {w.marker} {_new()}",
            "org_code": w.org,
            "channel": "fhir",
            "client_id": w.client_id,
        },
    )


async def _post_encounter(w: World, h: dict[str, str]) -> httpx.Response:
    return await w.client("integration").post(
        "/fhir/Encounter",
        content=json.dumps(encounter(w.nhs)),
        headers={**h, "Content-Type": FHIR_JSON},
    )


async def _fresh_letter(w: World) -> str:
    """A FHIR message of A's source kept as a dead letter (an Encounter with no patient)."""
    assert w.integration_sessions is not None
    resource = {k: v for k, v in encounter(w.nhs).items() if k != "subject"}
    letter = DeadLetter(
        source_system=w.source_id,
        channel="fhir",
        control_id=f"Encounter/{uuid.uuid4().hex}",
        reason="Encounter.subject: the patient's NHS number is required",
        payload=json.dumps(resource),
    )
    async with unit_of_work(w.integration_sessions) as session:
        session.add(letter)
    return str(letter.id)


async def _letter_state(w: World) -> Any:
    assert w.integration_sessions is not None
    return await _sql(
        w.integration_sessions,
        "SELECT status, attempts FROM dead_letter WHERE id = :i",
        i=uuid.UUID(w.fresh),
    )


async def _source_state(w: World) -> Any:
    assert w.integration_sessions is not None
    return await _sql(
        w.integration_sessions,
        "SELECT name, updated_at, (SELECT count(*) FROM encounter WHERE source_system = :s) "
        "FROM source_system WHERE id = :s",
        s=w.source_id,
    )


CALLS: dict[str, Call] = {
    "referrals GET /referrals/{id}": _get("referrals", lambda w: f"/referrals/{w.referral_id}"),
    "referrals GET /referrals/{id}/history": _get(
        "referrals", lambda w: f"/referrals/{w.referral_id}/history"
    ),
    "referrals GET /referrals?patient_id=": _get(
        "referrals", lambda w: "/referrals", lambda w: {"patient_id": w.patient_id}
    ),
    "referrals POST /referrals/{id}/cancel": _cancel,
    "referrals GET /referrals/{id}/message-context": _get(
        "referrals", lambda w: f"/referrals/{w.referral_id}/message-context"
    ),
    "referrals GET /fhir/ServiceRequest/{id}": _get(
        "referrals", lambda w: f"/fhir/ServiceRequest/{w.referral_id}"
    ),
    "referrals GET /fhir/ServiceRequest?patient=": _get(
        "referrals",
        lambda w: "/fhir/ServiceRequest",
        lambda w: {"patient": f"{NHS_NUMBER_SYSTEM}|{w.nhs}"},
    ),
    "referrals GET /fhir/Task/{id}": _get("referrals", lambda w: f"/fhir/Task/{w.referral_id}"),
    "care_plans GET /care-plans/{id}": _get("care_plans", lambda w: f"/care-plans/{w.plan_id}"),
    "care_plans GET /patients/{pid}/care-plan": _get(
        "care_plans", lambda w: f"/patients/{w.patient_id}/care-plan"
    ),
    "care_plans GET /care-plans/{id}/timeline": _get(
        "care_plans", lambda w: f"/care-plans/{w.plan_id}/timeline"
    ),
    "care_plans GET /care-plans/{id}/assessments": _get(
        "care_plans", lambda w: f"/care-plans/{w.plan_id}/assessments"
    ),
    "care_plans GET /fhir/CarePlan/{id}": _get(
        "care_plans", lambda w: f"/fhir/CarePlan/{w.plan_id}"
    ),
    "care_plans PUT /care-plans/{id}": _put_plan,
    "care_plans POST /care-plans/{id}/assessments": _post(
        "care_plans",
        lambda w: f"/care-plans/{w.plan_id}/assessments",
        {"instrument": "GAD-7", "answers": {str(i): 0 for i in range(1, 8)}},
    ),
    "care_plans GET /patients/{pid}/contact": _get(
        "care_plans", lambda w: f"/patients/{w.patient_id}/contact"
    ),
    "directory GET /organizations/{org}": _get("directory", lambda w: f"/organizations/{w.org}"),
    "directory PUT /organizations/{org}": lambda w, h: w.client("directory").put(
        f"/organizations/{w.org}", headers=h, json={"name": f"Organisation {w.org} {_new()}"}
    ),
    "directory GET /services/{draft}": _get("directory", lambda w: f"/services/{w.draft_id}"),
    "directory PATCH /services/{draft}": lambda w, h: w.client("directory").patch(
        f"/services/{w.draft_id}", headers=h, json={"description": f"A draft, {_new()}."}
    ),
    "directory GET /oruk/services?organization_id=": _get(
        "directory",
        lambda w: "/oruk/services",
        lambda w: {"organization_id": organization_id_for(w.org)},
    ),
    "notifications GET /webhook-subscriptions": _get(
        "notifications", lambda w: "/webhook-subscriptions"
    ),
    "notifications GET /webhook-subscriptions/{id}": _get(
        "notifications", lambda w: f"/webhook-subscriptions/{w.subscription_id}"
    ),
    "notifications PATCH /webhook-subscriptions/{id}": _patch_subscription,
    "notifications DELETE /webhook-subscriptions/{id}": _delete_subscription,
    "notifications GET /webhook-subscriptions/{id}/deliveries": _get(
        "notifications", lambda w: f"/webhook-subscriptions/{w.subscription_id}/deliveries"
    ),
    "notifications GET /webhook-subscriptions/{id}/deliveries/{d}": _get(
        "notifications",
        lambda w: f"/webhook-subscriptions/{w.subscription_id}/deliveries/{w.delivery_id}",
    ),
    "notifications POST /webhook-subscriptions/{id}/deliveries/{d}/resend": _post(
        "notifications",
        lambda w: f"/webhook-subscriptions/{w.subscription_id}/deliveries/{w.delivery_id}/resend",
    ),
    "notifications GET /messages?referral_id=": _get(
        "notifications", lambda w: "/messages", lambda w: {"referral_id": w.index_referral_id}
    ),
    "notifications GET /messages/{id}": _get(
        "notifications", lambda w: f"/messages/{w.message_id}"
    ),
    "notifications GET /partner-clients": _get("notifications", lambda w: "/partner-clients"),
    "notifications GET /partner-clients/{id}": _get(
        "notifications", lambda w: f"/partner-clients/{w.partner_client}"
    ),
    "notifications DELETE /partner-clients/{id}": lambda w, h: w.client("notifications").delete(
        f"/partner-clients/{w.fresh}", headers=h
    ),
    "notifications GET /alerts/{id}": _get("notifications", lambda w: f"/alerts/{w.alert_id}"),
    "notifications POST /alerts/{id}/acknowledge": _acknowledge,
    "dashboard GET /dashboard/alerts?patient_id=": _get(
        "dashboard", lambda w: "/dashboard/alerts", lambda w: {"patient_id": w.patient_id}
    ),
    "dashboard POST /dashboard/alerts/{id}/acknowledge": _dashboard_acknowledge,
    "dashboard GET /dashboard/overview": _get("dashboard", lambda w: "/dashboard/overview"),
    "integration GET /sources": _get("integration", lambda w: "/sources"),
    "integration PUT /sources/{id}": _put_source,
    "integration GET /status": _get("integration", lambda w: "/status"),
    "integration GET /dead-letters": _get("integration", lambda w: "/dead-letters"),
    "integration POST /fhir/Encounter": _post_encounter,
    "integration GET /fhir/Encounter/{id}": _get(
        "integration", lambda w: f"/fhir/Encounter/{w.encounter_id}"
    ),
    "integration POST /dead-letters/{id}/redrive": _post(
        "integration", lambda w: f"/dead-letters/{w.fresh}/redrive"
    ),
    "integration POST /dead-letters/{id}/discard": _post(
        "integration", lambda w: f"/dead-letters/{w.fresh}/discard"
    ),
}

#: cells whose token must carry a subject of A's: a FHIR source's client id
SUBJECT: dict[str, Callable[[World], str]] = {
    "integration POST /fhir/Encounter": lambda w: w.client_id,
    "integration GET /fhir/Encounter/{id}": lambda w: w.client_id,
}


async def _fresh_referral(w: World) -> str:
    return str((await _referral(w))["id"])


async def _fresh_alert(w: World) -> str:
    return await put_alert(w.s, w.notifications_sessions, patient_id=w.patient_id)


#: write cells that act on a resource of their own, made by its owner just before
FRESH: dict[str, Callable[[World], Awaitable[str]]] = {
    "referrals POST /referrals/{id}/cancel": _fresh_referral,
    "notifications DELETE /webhook-subscriptions/{id}": _subscription,
    "notifications POST /alerts/{id}/acknowledge": _fresh_alert,
    "notifications DELETE /partner-clients/{id}": _partner_client,
    "dashboard POST /dashboard/alerts/{id}/acknowledge": _fresh_alert,
    "integration POST /dead-letters/{id}/redrive": _fresh_letter,
    "integration POST /dead-letters/{id}/discard": _fresh_letter,
}


async def _read_as(w: World, service: str, path: str, role: str) -> tuple[int, str, str]:
    r = await w.client(service).get(path, headers=w.a(role))
    return r.status_code, r.headers.get("etag", ""), r.text


async def _delivery_state(w: World) -> Any:
    return await _sql(
        w.notifications_sessions,
        "SELECT status, next_attempt_at FROM webhook_delivery WHERE id = :d",
        d=w.delivery_id,
    )


async def _alert_state(w: World) -> Any:
    coordinator = auth(w.s, role="coordinator", org=w.org, ics=w.ics)
    r = await w.client("notifications").get(f"/alerts/{w.fresh}", headers=coordinator)
    return r.json()["status"], r.headers.get("etag")


#: what each write changes, read by its owner before and after the cell: a refused write
#: must leave it as it was, an allowed one must have changed it
SNAPSHOTS: dict[str, Callable[[World], Awaitable[Any]]] = {
    "referrals POST /referrals/{id}/cancel": lambda w: _read_as(
        w, "referrals", f"/referrals/{w.fresh}", "clinician"
    ),
    "care_plans PUT /care-plans/{id}": lambda w: _read_as(
        w, "care_plans", f"/care-plans/{w.plan_id}", "clinician"
    ),
    "care_plans POST /care-plans/{id}/assessments": lambda w: _read_as(
        w, "care_plans", f"/care-plans/{w.plan_id}/assessments", "clinician"
    ),
    "directory PUT /organizations/{org}": lambda w: _read_as(
        w, "directory", f"/organizations/{w.org}", "service_staff"
    ),
    "directory PATCH /services/{draft}": lambda w: _read_as(
        w, "directory", f"/services/{w.draft_id}", "service_staff"
    ),
    "notifications PATCH /webhook-subscriptions/{id}": lambda w: _read_as(
        w, "notifications", f"/webhook-subscriptions/{w.subscription_id}", "partner"
    ),
    "notifications DELETE /webhook-subscriptions/{id}": lambda w: _read_as(
        w, "notifications", f"/webhook-subscriptions/{w.fresh}", "partner"
    ),
    "notifications POST /webhook-subscriptions/{id}/deliveries/{d}/resend": _delivery_state,
    "notifications POST /alerts/{id}/acknowledge": _alert_state,
    "notifications DELETE /partner-clients/{id}": lambda w: _read_as(
        w, "notifications", f"/partner-clients/{w.fresh}", "admin"
    ),
    "dashboard POST /dashboard/alerts/{id}/acknowledge": _alert_state,
    "integration PUT /sources/{id}": _source_state,
    "integration POST /fhir/Encounter": _source_state,
    "integration POST /dead-letters/{id}/redrive": _letter_state,
    "integration POST /dead-letters/{id}/discard": _letter_state,
}


def _listed(endpoint: str, w: World, r: httpx.Response) -> tuple[set[str], int | None]:
    """The world's items a list or search answered, and the total it claims (None: none)."""
    body = r.json()
    if endpoint == "referrals GET /referrals?patient_id=":
        return {x["id"] for x in body}, int(r.headers["x-total-count"])
    if endpoint == "referrals GET /fhir/ServiceRequest?patient=":
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
        return {e["resource"]["id"] for e in body.get("entry", [])}, int(body["total"])
    if endpoint == "notifications GET /messages?referral_id=":
        return {x["id"] for x in body}, int(r.headers["x-total-count"])
    total = int(r.headers["x-total-count"]) if "x-total-count" in r.headers else None
    return {x["id"] for x in body}, total


def _world_item(endpoint: str, w: World) -> str:
    return {
        "referrals GET /referrals?patient_id=": w.referral_id,
        "referrals GET /fhir/ServiceRequest?patient=": w.referral_id,
        "notifications GET /webhook-subscriptions": w.subscription_id,
        "notifications GET /webhook-subscriptions/{id}/deliveries": w.delivery_id,
        "notifications GET /messages?referral_id=": w.message_id,
        "notifications GET /partner-clients": w.partner_client,
    }[endpoint]


def _check_cell(w: World, endpoint: str, role: str, relation: str, r: httpx.Response) -> list[str]:
    service = endpoint.split(" ", 1)[0]
    col = RELATIONS.index(relation)
    expected = POLICY[endpoint][role][col]
    where = f"{endpoint} as {role} of {relation}"
    if r.status_code != expected:
        return [f"{where}: {r.status_code}, expected {expected}: {r.text[:200]}"]
    problems = []
    fhir = " /fhir/" in endpoint
    if service == "dashboard" and " GET " in f" {endpoint} ":
        if media_type(r) != "text/html":  # pages, refusals included
            problems.append(f"{where}: a page answered as {media_type(r)}")
    elif expected >= 400:
        want = FHIR_JSON if fhir else PROBLEM_JSON
        if media_type(r) != want:
            problems.append(f"{where}: a {expected} answered as {media_type(r)}, not {want}")
    elif expected != 204:
        want = FHIR_JSON if fhir else "application/json"
        if media_type(r) != want:
            problems.append(f"{where}: answered as {media_type(r)}, not {want}")
    sees_a = expected < 400
    if endpoint in LISTS_LIKE and expected == 200:
        sees_a = POLICY[LISTS_LIKE[endpoint]][role][col] == 200
        ids, total = _listed(endpoint, w, r)
        item = _world_item(endpoint, w)
        if sees_a and item not in ids:
            problems.append(f"{where}: A's item is missing from the list")
        if not sees_a and ids:
            problems.append(f"{where}: the list shows {sorted(ids)}, another organisation's")
        if total is not None and total != len(ids):
            problems.append(f"{where}: the total says {total}, the list holds {len(ids)}")
    if not sees_a:
        # what the caller sent (an id in the path, say) may come back, as `instance`
        sent = str(r.request.url)
        leaked = [x for x in w.secrets(service, relation) if x and x in r.text and x not in sent]
        if leaked:
            problems.append(f"{where}: the answer carries A's data {leaked}: {r.text[:200]}")
    return problems


def test_the_policy_covers_every_call_and_every_role() -> None:
    assert set(POLICY) == set(CALLS)
    writes = {e for e in POLICY if e.split(" ")[1] in ("POST", "PUT", "PATCH", "DELETE")}
    assert set(SNAPSHOTS) == writes and set(FRESH) <= writes
    assert set(LISTS_LIKE) <= set(POLICY) and set(LISTS_LIKE.values()) <= set(POLICY)
    for endpoint, by_role in POLICY.items():
        assert set(by_role) == set(ROLES), endpoint
    # every service is in the table, and every role is refused somewhere and allowed somewhere
    assert {e.split(" ", 1)[0] for e in POLICY} == {
        "referrals",
        "care_plans",
        "directory",
        "notifications",
        "dashboard",
        "integration",
    }
    for role in ROLES:
        statuses = {s for by_role in POLICY.values() for s in by_role[role]}
        assert statuses & {200, 201, 204} and statuses & {403, 404}, role


async def test_every_role_gets_what_the_policy_says_in_every_service(world: World) -> None:
    failures: list[str] = []
    cells = 0
    for endpoint, call in CALLS.items():
        for role in ROLES:
            for relation in RELATIONS:
                if endpoint in FRESH:
                    world.fresh = await FRESH[endpoint](world)
                snapshot = SNAPSHOTS.get(endpoint)
                before = await snapshot(world) if snapshot else None
                sub = SUBJECT[endpoint](world) if endpoint in SUBJECT else None
                r = await call(world, world.caller(role, relation, sub))
                cells += 1
                failures += _check_cell(world, endpoint, role, relation, r)
                if snapshot is not None:
                    after = await snapshot(world)
                    if r.status_code >= 400 and after != before:
                        failures.append(
                            f"{endpoint} as {role} of {relation}: refused "
                            f"({r.status_code}) but it changed A's data"
                        )
                    if r.status_code < 400 and after == before:
                        failures.append(
                            f"{endpoint} as {role} of {relation}: allowed but nothing changed"
                        )
    services = len({e.split(" ", 1)[0] for e in CALLS})
    print(
        f"\nauthorisation matrix: {len(CALLS)} endpoints of {services} services x "
        f"{len(ROLES)} roles x {len(RELATIONS)} relations = {cells} cells checked"
    )
    assert not failures, f"{len(failures)} of {cells} cells differ:\n" + "\n".join(failures)


# --- a system's token is held to its scopes ------------------------------------------------------

#: the capability each endpoint is for: a client's token must name it among its scopes
CAPABILITY: dict[str, Capability] = {
    "referrals GET /referrals/{id}": C.REFERRAL_READ,
    "referrals GET /referrals/{id}/history": C.REFERRAL_READ,
    "referrals GET /referrals?patient_id=": C.REFERRAL_READ,
    "referrals POST /referrals/{id}/cancel": C.REFERRAL_ACT,
    "referrals GET /referrals/{id}/message-context": C.MESSAGE_CONTEXT_READ,
    "referrals GET /fhir/ServiceRequest/{id}": C.REFERRAL_READ,
    "referrals GET /fhir/ServiceRequest?patient=": C.REFERRAL_READ,
    "referrals GET /fhir/Task/{id}": C.REFERRAL_READ,
    "care_plans GET /care-plans/{id}": C.CARE_PLAN_READ,
    "care_plans GET /patients/{pid}/care-plan": C.CARE_PLAN_READ,
    "care_plans GET /care-plans/{id}/timeline": C.CARE_PLAN_READ,
    "care_plans GET /care-plans/{id}/assessments": C.CARE_PLAN_READ,
    "care_plans GET /fhir/CarePlan/{id}": C.CARE_PLAN_READ,
    "care_plans PUT /care-plans/{id}": C.CARE_PLAN_WRITE,
    "care_plans POST /care-plans/{id}/assessments": C.CARE_PLAN_WRITE,
    "care_plans GET /patients/{pid}/contact": C.PATIENT_CONTACT_READ,
    "directory GET /organizations/{org}": C.DIRECTORY_READ,
    "directory PUT /organizations/{org}": C.DIRECTORY_MANAGE,
    "directory GET /services/{draft}": C.DIRECTORY_READ,
    "directory PATCH /services/{draft}": C.DIRECTORY_MANAGE,
    "notifications GET /webhook-subscriptions": C.WEBHOOKS_MANAGE,
    "notifications GET /webhook-subscriptions/{id}": C.WEBHOOKS_MANAGE,
    "notifications PATCH /webhook-subscriptions/{id}": C.WEBHOOKS_MANAGE,
    "notifications DELETE /webhook-subscriptions/{id}": C.WEBHOOKS_MANAGE,
    "notifications GET /webhook-subscriptions/{id}/deliveries": C.WEBHOOKS_MANAGE,
    "notifications GET /webhook-subscriptions/{id}/deliveries/{d}": C.WEBHOOKS_MANAGE,
    "notifications POST /webhook-subscriptions/{id}/deliveries/{d}/resend": C.WEBHOOKS_MANAGE,
    "notifications GET /messages?referral_id=": C.MESSAGE_LOG_READ,
    "notifications GET /messages/{id}": C.MESSAGE_LOG_READ,
    "notifications GET /partner-clients": C.CLIENTS_MANAGE,
    "notifications GET /partner-clients/{id}": C.CLIENTS_MANAGE,
    "notifications DELETE /partner-clients/{id}": C.CLIENTS_MANAGE,
    "notifications GET /alerts/{id}": C.ALERT_READ,
    "notifications POST /alerts/{id}/acknowledge": C.ALERT_ACT,
    "integration GET /sources": C.INTEGRATION_MANAGE,
    "integration PUT /sources/{id}": C.INTEGRATION_MANAGE,
    "integration GET /status": C.INTEGRATION_MANAGE,
    "integration GET /dead-letters": C.INTEGRATION_MANAGE,
    "integration POST /fhir/Encounter": C.CONTACTS_SUBMIT,
    "integration GET /fhir/Encounter/{id}": C.CONTACTS_SUBMIT,
    "integration POST /dead-letters/{id}/redrive": C.INTEGRATION_MANAGE,
    "integration POST /dead-letters/{id}/discard": C.INTEGRATION_MANAGE,
}

#: what else an endpoint's client needs besides its own capability: a change finds the thing
#: first (the read's scope), and a draft is shown only to those who manage it
ALSO_NEEDS: dict[str, set[Capability]] = {
    "referrals POST /referrals/{id}/cancel": {C.REFERRAL_READ},
    "directory GET /services/{draft}": {C.DIRECTORY_MANAGE},
    "notifications POST /alerts/{id}/acknowledge": {C.ALERT_READ},
}

#: endpoints beyond the matrix's, for capabilities it does not reach: (role, call, allowed status)
SCOPE_EXTRA: dict[str, tuple[Capability, str, Call, int]] = {
    "referrals POST /referrals": (
        C.REFERRAL_CREATE,
        "clinician",
        lambda w, h: w.client("referrals").post(
            "/referrals", headers=h, json=referral_body(to_service_id=w.svc_id, to_org=w.svc_org)
        ),
        201,
    ),
    "notifications GET /inbox": (
        C.OWN_INBOX,
        "clinician",
        _get("notifications", lambda w: "/inbox"),
        200,
    ),
    "notifications GET /preferences/me": (
        C.OWN_PREFERENCES,
        "clinician",
        _get("notifications", lambda w: "/preferences/me"),
        200,
    ),
}


def _client_token(w: World, role: str, scopes: set[Capability], sub: str | None) -> dict[str, str]:
    """A system's token as the provider issues it for client credentials: the client is its own
    subject, and its scopes are listed."""
    client = sub or f"partner-{uuid.uuid4().hex[:8]}"
    token = mint_token(
        w.s,
        sub=client,
        client_id=client,
        roles=[role],
        org=w.org,
        ics=w.ics,
        scope=" ".join(sorted(c.value for c in scopes)),
    )
    return {"Authorization": f"Bearer {token}"}


def _scope_refusal(where: str, r: httpx.Response, needed: Capability) -> list[str]:
    challenge = r.headers.get("www-authenticate", "")
    want = f'Bearer error="insufficient_scope", scope="{needed.value}"'
    if r.status_code != 403 or challenge != want:
        return [f"{where}: {r.status_code} {challenge!r}, expected 403 {want!r}: {r.text[:200]}"]
    if " /fhir/" not in where and r.json().get("error") != "insufficient_scope":
        return [f"{where}: the problem does not say insufficient_scope: {r.text[:200]}"]
    return []


def test_every_endpoint_of_the_matrix_names_its_capability() -> None:
    assert set(CAPABILITY) == {
        e for e in CALLS if not e.startswith("dashboard ") and e not in PUBLIC
    }
    covered = set(CAPABILITY.values()) | {c for c, *_ in SCOPE_EXTRA.values()}
    # the rest are reached by one endpoint of their own, refused by the same shared decision
    # (tests/shared/test_access_scopes.py checks every capability there)
    assert set(Capability) - covered == {
        C.REFERRAL_HISTORY_IMPORT,
        C.CARE_PLAN_CREATE,
        C.BREAK_GLASS,
        C.FIGURES_READ,
        C.TEMPORAL_CODEC,
    }


async def test_a_client_token_without_the_scope_is_refused_in_every_service(world: World) -> None:
    """Every endpoint, called by a system's token of a role and organisation the table allows,
    whose scopes name every capability but the endpoint's own: 403 insufficient_scope, nothing
    changed; the same client with only the scopes the endpoint needs gets what the table
    says."""
    failures: list[str] = []
    cells: list[tuple[str, Capability, str, Call, int]] = []
    for endpoint, cap in CAPABILITY.items():
        allowed = [r for r in ROLES if POLICY[endpoint][r][0] < 400]
        assert allowed, endpoint
        cells.append((endpoint, cap, allowed[0], CALLS[endpoint], POLICY[endpoint][allowed[0]][0]))
    cells += [(e, cap, role, call, ok) for e, (cap, role, call, ok) in SCOPE_EXTRA.items()]
    for endpoint, cap, role, call, ok in cells:
        sub = SUBJECT[endpoint](world) if endpoint in SUBJECT else None
        for with_scope in (False, True):
            needs = {cap} | ALSO_NEEDS.get(endpoint, set())
            scopes = set(Capability) - {cap} if not with_scope else needs
            if endpoint in FRESH:
                world.fresh = await FRESH[endpoint](world)
            snapshot = SNAPSHOTS.get(endpoint)
            before = await snapshot(world) if snapshot else None
            r = await call(world, _client_token(world, role, scopes, sub))
            where = f"{endpoint} as a {role} client {'with' if with_scope else 'without'} {cap}"
            if not with_scope:
                failures += _scope_refusal(where, r, cap)
                if snapshot is not None and await snapshot(world) != before:
                    failures.append(f"{where}: refused but it changed A's data")
            elif r.status_code != ok:
                failures.append(f"{where}: {r.status_code}, expected {ok}: {r.text[:200]}")
    print(f"\nscopes: {len(cells)} endpoints x (without, with) their scope checked")
    assert not failures, f"{len(failures)} of {2 * len(cells)} calls differ:\n" + "\n".join(
        failures
    )
