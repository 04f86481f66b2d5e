"""Who may do what with a referral: every role × every endpoint × the caller's relation to the
referral, against the table below (the policy of issue #3, written out), on the real database.

Relations: an acting role (clinician, service staff, partner staff) belongs to the referring
organisation, the receiving service's organisation, or another organisation of the same ICS;
coordinators (and the roles that may not see referrals at all) belong to the referral's ICS or
to another ICS. The role groups are checked against the one role table (shared/access.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.access import Capability, Principal, Role, may_use
from shared.errors import PROBLEM_JSON
from shared.fhir import FHIR_JSON, NHS_NUMBER_SYSTEM
from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import referral_body
from tests.referrals.support import (
    Service,
    if_match,
    new_ics,
    new_org,
    new_service,
    new_user,
    referral_row,
)

ACTING_ROLES = ["clinician", "service_staff", "partner"]
OVERSIGHT_ROLES = ["coordinator"]
#: roles the one role table (shared/access.py) gives nothing of referrals: an organisation's
#: administrator, an ICS lead (figures only), a Waymark process
NO_REFERRAL_ROLES = ["admin", "ics_lead", "service"]
ACTING_RELATIONS = ["referrer", "receiver", "other-org"]
OVERSIGHT_RELATIONS = ["same-ics", "other-ics"]
CALLERS = [(role, rel) for role in ACTING_ROLES for rel in ACTING_RELATIONS] + [
    (role, rel) for role in OVERSIGHT_ROLES + NO_REFERRAL_ROLES for rel in OVERSIGHT_RELATIONS
]

ENDPOINTS = [
    "POST /referrals",
    "GET /referrals",
    "GET /referrals/{id}",
    "GET /referrals/{id}/history",
    "POST /referrals/{id}/accept",
    "POST /referrals/{id}/cancel",
    "GET /worklist",
    "POST /fhir/ServiceRequest",
    "GET /fhir/ServiceRequest/{id}",
    "GET /fhir/ServiceRequest",
    "GET /fhir/Task/{id}",
    "PUT /fhir/Task/{id}",
    "GET /fhir/Task?based-on",
    "POST /referrals/history",
    "GET /referrals/history/{source}",
]

# The policy. Columns: referrer, receiver, other-org (acting roles) | same-ics, other-ics
# (coordinators and admins). A referral that is not yours is a 404, like an unknown id, so
# ids cannot be probed; a referral you may read but not act on is a 403.
POLICY: dict[str, tuple[int, int, int, int, int]] = {
    #                                  referrer receiver other-org same-ics other-ics
    "POST /referrals": (201, 201, 201, 403, 403),
    "GET /referrals": (200, 200, 200, 200, 200),
    "GET /referrals/{id}": (200, 200, 404, 200, 404),
    "GET /referrals/{id}/history": (200, 200, 404, 200, 404),
    "POST /referrals/{id}/accept": (403, 200, 404, 403, 404),
    "POST /referrals/{id}/cancel": (200, 200, 404, 403, 404),
    "GET /worklist": (200, 200, 200, 403, 403),
    "POST /fhir/ServiceRequest": (201, 201, 201, 403, 403),
    "GET /fhir/ServiceRequest/{id}": (200, 200, 404, 200, 404),
    "GET /fhir/ServiceRequest": (200, 200, 200, 200, 200),
    "GET /fhir/Task/{id}": (200, 200, 404, 200, 404),
    # the receiver writes back (accepted); the referrer may not accept
    "PUT /fhir/Task/{id}": (403, 200, 404, 403, 404),
    # a search: the Task is listed exactly when GET /fhir/Task/{id} would succeed
    "GET /fhir/Task?based-on": (200, 200, 200, 200, 200),
    # the historical import: the integration service's own credential only
    "POST /referrals/history": (403, 403, 403, 403, 403),
    "GET /referrals/history/{source}": (403, 403, 403, 403, 403),
}
#: what a role without any referral capability gets, whatever its ICS: a referral is a 404
#: like an unknown id, everything else a 403 naming the roles that may
NO_REFERRALS: dict[str, int] = {
    "POST /referrals": 403,
    "GET /referrals": 403,
    "GET /referrals/{id}": 404,
    "GET /referrals/{id}/history": 404,
    "POST /referrals/{id}/accept": 404,
    "POST /referrals/{id}/cancel": 404,
    "GET /worklist": 403,
    "POST /fhir/ServiceRequest": 403,
    "GET /fhir/ServiceRequest/{id}": 404,
    "GET /fhir/ServiceRequest": 403,
    "GET /fhir/Task/{id}": 404,
    "PUT /fhir/Task/{id}": 404,
    "GET /fhir/Task?based-on": 403,
    "POST /referrals/history": 403,
    "GET /referrals/history/{source}": 403,
}
COLUMN = {"referrer": 0, "receiver": 1, "other-org": 2, "same-ics": 3, "other-ics": 4}

#: the world's referrals each caller's lists show (see World): to or from the caller's
#: organisation; everything of the caller's ICS for coordinators and admins
LISTED: dict[str, set[str]] = {
    "referrer": {"R"},
    "receiver": {"R", "R_OUT"},
    "other-org": set(),
    "same-ics": {"R", "R_OUT", "NOISE"},
    "other-ics": set(),
}
#: the world's referrals on each caller's worklist (submitted referrals to their organisation)
WORKLISTED: dict[str, set[str]] = {
    "referrer": set(),
    "receiver": {"R"},
    "other-org": set(),
    "same-ics": set(),
    "other-ics": set(),
}


def test_the_policy_covers_every_endpoint() -> None:
    assert set(POLICY) == set(ENDPOINTS) == set(NO_REFERRALS)


def test_the_roles_here_are_the_role_tables() -> None:
    """The groups above are what shared/access.py says, not a second opinion."""

    def may(role: str, cap: Capability) -> bool:
        return may_use(Principal(user="u", roles=frozenset({Role(role)}), org="X", ics="I"), cap)

    assert {r for r in Role if may(r, Capability.REFERRAL_ACT)} == set(ACTING_ROLES)
    assert {r for r in Role if may(r, Capability.REFERRAL_READ)} == set(
        ACTING_ROLES + OVERSIGHT_ROLES
    )
    assert set(Role) == set(ACTING_ROLES + OVERSIGHT_ROLES + NO_REFERRAL_ROLES)


@dataclass
class World:
    """One ICS: REF refers R to the service S that RCV runs; RCV itself refers R_OUT onward
    to S2 (run by N2); N1 refers NOISE to S2. No one else uses these organisations."""

    ics: str
    ref: str
    rcv: str
    n1: str
    s: Service
    s2: Service
    ids: dict[str, str]
    nhs: dict[str, str]

    def caller(self, settings: Settings, role: str, relation: str) -> dict[str, str]:
        org = {"referrer": self.ref, "receiver": self.rcv}.get(relation, new_org("OTH"))
        ics = new_ics() if relation == "other-ics" else self.ics
        if relation in ("same-ics", "other-ics"):
            org = new_org("ICB")
        return auth(settings, role=role, org=org, ics=ics, sub=new_user())


async def _refer(
    client: httpx.AsyncClient,
    settings: Settings,
    *,
    org: str,
    ics: str,
    svc: Service,
    role: str = "clinician",
) -> dict[str, Any]:
    r = await client.post(
        "/referrals",
        json=referral_body(to_service_id=svc.id, to_org=svc.org),
        headers=auth(settings, role=role, org=org, ics=ics),
    )
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
async def world(
    referrals_client: httpx.AsyncClient, settings: Settings, referrals_sessions: async_sessionmaker
) -> World:
    ics = new_ics()
    ref, rcv, n1, n2 = new_org("REF"), new_org("RCV"), new_org("NA"), new_org("NB")
    s = await new_service(settings, referrals_sessions, org=rcv)
    s2 = await new_service(settings, referrals_sessions, org=n2, category="social_prescribing")
    r = await _refer(referrals_client, settings, org=ref, ics=ics, svc=s)
    r_out = await _refer(referrals_client, settings, org=rcv, ics=ics, svc=s2, role="service_staff")
    noise = await _refer(referrals_client, settings, org=n1, ics=ics, svc=s2)
    return World(
        ics=ics,
        ref=ref,
        rcv=rcv,
        n1=n1,
        s=s,
        s2=s2,
        ids={"R": r["id"], "R_OUT": r_out["id"], "NOISE": noise["id"]},
        nhs={"R": r["nhs_number"], "R_OUT": r_out["nhs_number"], "NOISE": noise["nhs_number"]},
    )


def service_request(svc: Service) -> dict[str, Any]:
    """A minimal valid R4 ServiceRequest for a new referral (see api/test_fhir.py for more)."""
    body = referral_body()
    p = body["patient"]
    ext = "https://waymark.nhs.example/fhir/StructureDefinition/"
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": p["nhs_number"]}],
                "name": [{"family": p["family_name"], "given": [p["given_name"]]}],
                "birthDate": p["birth_date"],
            }
        ],
        "subject": {"reference": "#patient"},
        "extension": [{"url": ext + "consent-to-referral", "valueBoolean": True}],
        "performer": [
            {
                "identifier": {
                    "system": "https://waymark.nhs.example/fhir/Id/directory-service",
                    "value": svc.id,
                }
            }
        ],
        "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "279039007"}]}],
        "note": [{"text": "Low back pain, low mood."}],
    }


async def call(
    client: httpx.AsyncClient,
    settings: Settings,
    world: World,
    endpoint: str,
    headers: dict[str, str],
) -> httpx.Response:
    rid = world.ids["R"]
    method, path = endpoint.split(" ", 1)
    url = path.replace("{id}", rid)
    if endpoint == "POST /referrals":
        return await client.post(
            url, headers=headers, json=referral_body(to_service_id=world.s.id, to_org=world.s.org)
        )
    if endpoint == "PUT /fhir/Task/{id}":
        task = {"resourceType": "Task", "status": "accepted", "intent": "order"}
        return await client.put(url, headers={**headers, "content-type": FHIR_JSON}, json=task)
    if endpoint == "GET /fhir/Task?based-on":
        return await client.get(
            "/fhir/Task", headers=headers, params={"based-on": f"ServiceRequest/{rid}"}
        )
    if endpoint == "POST /referrals/history":
        body = {
            "source_system": "ers-worklist",
            "source_ref": str(uuid.uuid4().int % 10**12),
            "nhs_number": world.nhs["R"],
            "from_org": world.ref,
            "to_org": world.s.org,
            "to_service_id": world.s.id,
            "service_category": world.s.category,
            "priority": "routine",
            "history": [{"state": "submitted", "at": "2026-01-04T09:12:00Z"}],
        }
        return await client.post(url, headers=headers, json=body)
    if endpoint == "GET /referrals/history/{source}":
        return await client.get("/referrals/history/ers-worklist/000000123456", headers=headers)
    if endpoint == "POST /fhir/ServiceRequest":
        return await client.post(
            url, headers={**headers, "content-type": FHIR_JSON}, json=service_request(world.s)
        )
    if method == "POST":
        body = {"reason_code": "patient-request"} if url.endswith("/cancel") else {}
        return await client.post(url, headers={**headers, **if_match(1)}, json=body)
    if endpoint == "GET /worklist":
        return await client.get(url, headers=headers, params={"limit": 200})
    if endpoint in ("GET /referrals", "GET /fhir/ServiceRequest"):
        return await client.get(
            url, headers=headers, params={"_count" if "fhir" in url else "limit": 200}
        )
    return await client.get(url, headers=headers)


def _listed_ids(endpoint: str, r: httpx.Response) -> set[str]:
    body = r.json()
    if endpoint == "GET /referrals":
        return {x["id"] for x in body}
    if endpoint == "GET /worklist":
        return {x["id"] for x in body["items"]}
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return {e["resource"]["id"] for e in body["entry"]}


def _total(endpoint: str, r: httpx.Response) -> int:
    if endpoint == "GET /referrals":
        return int(r.headers["x-total-count"])
    return int(r.json()["total"])


class TestAccessMatrix:
    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    @pytest.mark.parametrize("role, relation", CALLERS, ids=[f"{r}-{x}" for r, x in CALLERS])
    async def test_each_role_gets_what_the_policy_says(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
        world: World,
        role: str,
        relation: str,
        endpoint: str,
    ) -> None:
        expected = (
            NO_REFERRALS[endpoint]
            if role in NO_REFERRAL_ROLES
            else POLICY[endpoint][COLUMN[relation]]
        )
        headers = world.caller(settings, role, relation)
        r = await call(referrals_client, settings, world, endpoint, headers)
        assert r.status_code == expected, (endpoint, role, relation, r.text)

        fhir = "/fhir/" in endpoint
        if expected >= 400:
            media = FHIR_JSON if fhir else PROBLEM_JSON
            assert r.headers["content-type"].split(";")[0] == media
            if fhir:
                assert r.json()["resourceType"] == "OperationOutcome"
            # whoever may not see the referral learns nothing about the patient
            assert world.nhs["R"] not in r.text
        else:
            ctype = r.headers["content-type"].split(";")[0]
            assert ctype == (FHIR_JSON if fhir else "application/json")

        if expected == 200 and endpoint in (
            "GET /referrals",
            "GET /fhir/ServiceRequest",
            "GET /worklist",
        ):
            listed = _listed_ids(endpoint, r)
            want = WORKLISTED[relation] if endpoint == "GET /worklist" else LISTED[relation]
            # the caller's organisation (or ICS) is the world's, so the lists are exact
            assert listed == {world.ids[k] for k in want}, (endpoint, role, relation)
            assert _total(endpoint, r) == len(want)
            text = r.text
            for name in {"R", "R_OUT", "NOISE"} - want:
                assert world.nhs[name] not in text

        if expected == 200 and endpoint == "GET /fhir/Task?based-on":
            readable = POLICY["GET /fhir/Task/{id}"][COLUMN[relation]] == 200
            assert _listed_ids(endpoint, r) == ({world.ids["R"]} if readable else set())
            if not readable:
                assert world.nhs["R"] not in r.text

        # a refused change changes nothing
        if endpoint.startswith("POST /referrals/{id}/") or endpoint == "PUT /fhir/Task/{id}":
            row = await referral_row(referrals_sessions, world.ids["R"])
            action = "accept" if endpoint.startswith("PUT") else endpoint.rsplit("/", 1)[1]
            if expected == 200:
                assert row.state == {"accept": "accepted", "cancel": "cancelled"}[action]
                assert row.version == 2
            else:
                assert (row.state, row.version) == ("submitted", 1)


class TestNoToken:
    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    async def test_every_endpoint_needs_a_token(
        self, referrals_client: httpx.AsyncClient, settings: Settings, world: World, endpoint: str
    ) -> None:
        for headers in (
            {},
            {"Authorization": "Bearer not-a-token"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ):
            r = await call(referrals_client, settings, world, endpoint, headers)
            assert r.status_code == 401, (endpoint, r.text)
            if "/fhir/" in endpoint:
                assert r.headers["content-type"].split(";")[0] == FHIR_JSON
                body = r.json()
                assert body["resourceType"] == "OperationOutcome"
                assert body["issue"][0]["code"] == "login"
            else:
                assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON
                assert r.json()["status"] == 401
            assert world.nhs["R"] not in r.text

    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    async def test_a_401_challenges_for_a_bearer_token(
        self, referrals_client: httpx.AsyncClient, settings: Settings, world: World, endpoint: str
    ) -> None:
        # RFC 9110 15.5.2: a 401 response MUST carry WWW-Authenticate, FHIR ones included
        r = await call(referrals_client, settings, world, endpoint, {})
        assert r.status_code == 401
        assert r.headers.get("www-authenticate") == "Bearer", (endpoint, dict(r.headers))

    async def test_an_unknown_referral_id_without_a_token_is_still_a_401(
        self, referrals_client: httpx.AsyncClient
    ) -> None:
        for url in (f"/referrals/{uuid.uuid4()}", f"/fhir/Task/{uuid.uuid4()}"):
            assert (await referrals_client.get(url)).status_code == 401


class TestPartnerLists:
    async def test_a_partner_sees_only_referrals_to_or_from_itself(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        """A workplace partner receives referrals to its scheme and refers people on; it sees
        those two and nothing else of its ICS, in every list, search and by patient."""
        ics, partner = new_ics(), new_org("WORK")
        scheme = await new_service(
            settings, referrals_sessions, org=partner, category="workplace_health"
        )
        physio = await new_service(settings, referrals_sessions, category="msk_physiotherapy")
        gp = new_org("GP")
        to_partner = await _refer(referrals_client, settings, org=gp, ics=ics, svc=scheme)
        from_partner = await _refer(
            referrals_client, settings, org=partner, ics=ics, svc=physio, role="partner"
        )
        unrelated = await _refer(referrals_client, settings, org=gp, ics=ics, svc=physio)
        headers = auth(settings, role="partner", org=partner, ics=ics)

        r = await referrals_client.get("/referrals", headers=headers)
        assert {x["id"] for x in r.json()} == {to_partner["id"], from_partner["id"]}
        assert r.headers["x-total-count"] == "2"
        b = (await referrals_client.get("/fhir/ServiceRequest", headers=headers)).json()
        assert {e["resource"]["id"] for e in b["entry"]} == {to_partner["id"], from_partner["id"]}
        assert b["total"] == 2
        w = (await referrals_client.get("/worklist", headers=headers)).json()
        assert [i["id"] for i in w["items"]] == [to_partner["id"]] and w["total"] == 1

        # searching by the unrelated referral's patient finds nothing
        by_pid = await referrals_client.get(
            "/referrals", headers=headers, params={"patient_id": unrelated["patient_id"]}
        )
        assert by_pid.json() == [] and by_pid.headers["x-total-count"] == "0"
        by_nhs = await referrals_client.get(
            "/fhir/ServiceRequest",
            headers=headers,
            params={"patient": f"{NHS_NUMBER_SYSTEM}|{unrelated['nhs_number']}"},
        )
        assert by_nhs.json()["total"] == 0 and by_nhs.json().get("entry", []) == []
        # the Bundle's self and first links echo the search as the caller sent it (FHIR's
        # "search as understood"): the caller's own input, nothing the server knows of the
        # person; outside them nothing names the patient
        unlinked = {k: v for k, v in by_nhs.json().items() if k != "link"}
        assert unrelated["nhs_number"] not in json.dumps(unlinked)
        assert unrelated["patient_id"] not in by_nhs.text
