"""The directory's own API on the real PostgreSQL: organisations, the service lifecycle, who may
do what, what each change writes (row, audit entry, outbox event), idempotency and ETags."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.errors import PROBLEM_JSON
from shared.settings import Settings
from tests.conftest import auth
from tests.directory.conftest import (
    CENTRE_POSTCODE,
    create,
    create_published,
    new_code,
    new_provider,
    query,
    service_body,
)


def assert_problem(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON
    for w in words:
        assert w in r.json()["detail"], (w, r.json()["detail"])


class TestOrganizations:
    async def test_staff_register_their_organisation_then_update_it(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings, name="Wayford Pain Service")
        r = await directory_client.get(f"/organizations/{p.code}", headers=p.headers)
        assert r.status_code == 200
        assert r.json()["name"] == "Wayford Pain Service" and r.json()["version"] == 1
        r = await directory_client.put(
            f"/organizations/{p.code}",
            headers=p.headers,
            json={"name": "Wayford Pain Service (NHS)"},
        )
        assert r.status_code == 200 and r.json()["version"] == 2

    async def test_staff_cannot_register_another_organisation(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await directory_client.put(
            f"/organizations/{new_code()}",
            json={"name": "X"},
            headers=auth(settings, role="service_staff", org=new_code()),
        )
        assert_problem(r, 403)

    async def test_a_clinician_cannot_register_an_organisation(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        code = new_code()
        r = await directory_client.put(
            f"/organizations/{code}",
            json={"name": "X"},
            headers=auth(settings, role="clinician", org=code),
        )
        assert_problem(r, 403)


class TestCreateService:
    async def test_staff_create_a_draft_with_their_chosen_id(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        body = service_body(
            self_referral=True,
            waiting_weeks=6,
            communication_support=["bsl", "easy_read"],
            schedules=[{"byday": ["MO", "WE"], "opens_at": "09:00", "closes_at": "17:00"}],
            cost_options=[{"amount": 0, "option": "NHS funded"}],
            languages=[{"name": "English", "code": "en"}],
            contacts=[{"name": "Reception", "phone": "01632 960000"}],
        )
        r = await directory_client.post("/services", json=body, headers=p.headers)
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["id"] == body["id"] and out["lifecycle"] == "draft"
        assert out["org_code"] == p.code and out["status"] == "active"
        assert out["self_referral"] is True and out["waiting_weeks"] == 6
        assert out["communication_support"] == ["bsl", "easy_read"]
        assert out["free_of_charge"] is True
        assert out["schedules"][0]["byday"] == ["MO", "WE"]
        assert out["contacts"][0]["phone"] == "01632 960000"
        loc = out["locations"][0]
        assert loc["postcode"] == CENTRE_POSTCODE
        # geocoded through the postcode table
        assert (loc["latitude"], loc["longitude"]) == (53.709534, -1.931754)
        assert r.headers["etag"] == 'W/"1"'
        assert r.headers["location"] == f"/services/{body['id']}"

    async def test_a_taken_id_is_a_conflict(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        first = await create(directory_client, p)
        r = await directory_client.post(
            "/services", json=service_body(id=first["id"]), headers=p.headers
        )
        assert_problem(r, 409, first["id"])

    async def test_an_unregistered_organisation_is_told_to_register(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        code = new_code()
        r = await directory_client.post(
            "/services", json=service_body(), headers=auth(settings, role="service_staff", org=code)
        )
        assert_problem(r, 422, f"PUT /organizations/{code}")

    async def test_staff_cannot_create_for_another_organisation(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        mine, theirs = (
            await new_provider(directory_client, settings),
            await new_provider(directory_client, settings),
        )
        r = await directory_client.post(
            "/services", json=service_body(org_code=theirs.code), headers=mine.headers
        )
        assert_problem(r, 403)

    async def test_an_organisations_admin_creates_for_it_and_for_no_other(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings, ics="ICS-ADM")
        r = await directory_client.post(
            "/services",
            json=service_body(org_code=p.code),
            headers=auth(settings, role="admin", org=p.code, ics="ICS-ADM"),
        )
        assert r.status_code == 201, r.text
        # an administrator of another organisation, even of the same ICS, may not
        for org, ics in (("ICB-1", "ICS-ADM"), ("ICB-2", "ICS-OTHER")):
            other = await directory_client.post(
                "/services",
                json=service_body(org_code=p.code),
                headers=auth(settings, role="admin", org=org, ics=ics),
            )
            assert_problem(other, 403)

    async def test_bad_bodies_are_422_with_reasons(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        cases = [
            (dict(category="acupuncture"), "category"),
            (dict(conditions=[]), "conditions"),
            (dict(conditions=["persistent_pain", "persistent_pain"]), "once"),
            (dict(locations=[{"name": "x", "postcode": "NOT A CODE"}]), "not a UK postcode"),
            (dict(locations=[{"name": "x", "postcode": "WY99 9ZZ"}]), "not in the directory"),
            (dict(locations=[{"name": "x"}]), "physical location"),
            (dict(minimum_age=60, maximum_age=18), "minimum_age"),
            (dict(id="has spaces"), "id"),
            (dict(schedules=[{"byday": ["XX"]}]), "byday"),
            (dict(waiting_weeks=-1), "waiting_weeks"),
        ]
        for overrides, word in cases:
            r = await directory_client.post(
                "/services", json=service_body(**overrides), headers=p.headers
            )
            assert_problem(r, 422, word)

    async def test_the_same_idempotency_key_creates_once(
        self,
        directory_client: httpx.AsyncClient,
        settings: Settings,
        directory_sessions: async_sessionmaker,
    ) -> None:
        p = await new_provider(directory_client, settings)
        body = service_body()
        headers = dict(p.headers, **{"Idempotency-Key": "create-1"})
        r1 = await directory_client.post("/services", json=body, headers=headers)
        r2 = await directory_client.post("/services", json=body, headers=headers)
        assert r1.status_code == r2.status_code == 201
        assert r2.headers["idempotent-replayed"] == "true" and r2.json() == r1.json()
        rows = await query(
            directory_sessions, "SELECT id FROM service WHERE org_code = :o", o=p.code
        )
        assert len(rows) == 1


class TestLifecycle:
    async def test_publish_then_withdraw_with_audit_and_events(
        self,
        directory_client: httpx.AsyncClient,
        settings: Settings,
        directory_sessions: async_sessionmaker,
    ) -> None:
        p = await new_provider(directory_client, settings)
        created = await create(directory_client, p)
        sid = created["id"]
        assert (
            await query(directory_sessions, "SELECT 1 FROM outbox WHERE key = :k", k=sid) == []
        )  # a draft is nobody's business yet
        r = await directory_client.post(f"/services/{sid}/publish", headers=p.headers)
        assert r.status_code == 200 and r.json()["lifecycle"] == "published"
        assert r.json()["published_at"] and r.headers["etag"] == 'W/"2"'
        r = await directory_client.post(
            f"/services/{sid}/withdraw",
            headers=p.headers,
            json={"reason": "funding_ended", "note": "Contract ended in March."},
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["lifecycle"] == "withdrawn" and out["withdrawal_reason"] == "funding_ended"
        events = await query(
            directory_sessions,
            "SELECT event_type, payload FROM outbox WHERE key = :k ORDER BY seq",
            k=sid,
        )
        assert [e.event_type for e in events] == [
            "uk.waymark.directory.service.published",
            "uk.waymark.directory.service.withdrawn",
        ]
        withdrawn = events[1].payload["data"]
        assert withdrawn["reason"] == "funding_ended"
        assert "Contract ended" not in str(events[1].payload)  # the note stays here
        audit = await query(
            directory_sessions,
            "SELECT action, actor, actor_org FROM audit_log WHERE resource_id = :k ORDER BY at",
            k=sid,
        )
        assert [a.action for a in audit] == ["create", "publish", "withdraw"]
        assert {(a.actor, a.actor_org) for a in audit} == {(f"{p.user}", p.code)}

    async def test_lifecycle_conflicts(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        draft = await create(directory_client, p)
        r = await directory_client.post(
            f"/services/{draft['id']}/withdraw", headers=p.headers, json={"reason": "other"}
        )
        assert_problem(r, 409, "never published")
        published = await create_published(directory_client, p)
        r = await directory_client.post(f"/services/{published['id']}/publish", headers=p.headers)
        assert_problem(r, 409)

    async def test_a_withdrawn_service_can_be_published_again(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        s = await create_published(directory_client, p)
        await directory_client.post(
            f"/services/{s['id']}/withdraw",
            headers=p.headers,
            json={"reason": "not_accepting_referrals"},
        )
        r = await directory_client.post(f"/services/{s['id']}/publish", headers=p.headers)
        assert r.status_code == 200 and r.json()["lifecycle"] == "published"
        assert r.json()["withdrawal_reason"] is None

    async def test_an_unpublishable_service_is_refused_with_reasons(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        s = await create(directory_client, p, how_to_refer=None, locations=[])
        r = await directory_client.post(f"/services/{s['id']}/publish", headers=p.headers)
        assert_problem(r, 422, "how to refer", "in-person service needs a physical location")

    async def test_other_organisations_cannot_change_or_see_drafts(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        owner, other = (
            await new_provider(directory_client, settings),
            await new_provider(directory_client, settings),
        )
        draft = await create(directory_client, owner)
        published = await create_published(directory_client, owner)
        r = await directory_client.get(f"/services/{draft['id']}", headers=other.headers)
        assert_problem(r, 404)
        r = await directory_client.post(f"/services/{draft['id']}/publish", headers=other.headers)
        assert_problem(r, 404)
        r = await directory_client.patch(
            f"/services/{published['id']}", json={"name": "x"}, headers=other.headers
        )
        assert_problem(r, 403)
        clinician = auth(settings, role="clinician", org="GP-A81001")
        r = await directory_client.get(f"/services/{published['id']}", headers=clinician)
        assert r.status_code == 200

    async def test_every_route_needs_a_token(self, directory_client: httpx.AsyncClient) -> None:
        # but the public ORUK feed (tests/directory/oruk/test_profile.py::TestPublicAccess)
        for method, path in [
            ("GET", "/services"),
            ("GET", "/services/x"),
            ("POST", "/services"),
            ("GET", "/postcodes/WY1%200BG"),
        ]:
            r = await directory_client.request(method, path)
            assert_problem(r, 401)


class TestUpdateService:
    async def test_an_update_of_a_published_service_publishes_updated(
        self,
        directory_client: httpx.AsyncClient,
        settings: Settings,
        directory_sessions: async_sessionmaker,
    ) -> None:
        p = await new_provider(directory_client, settings)
        s = await create_published(directory_client, p)
        r = await directory_client.patch(
            f"/services/{s['id']}",
            headers=dict(p.headers, **{"If-Match": 'W/"2"'}),
            json={
                "waiting_weeks": 12,
                "conditions": ["persistent_pain", "mental_health"],
                "status": "temporarily closed",
            },
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["waiting_weeks"] == 12 and out["version"] == 3
        assert out["conditions"] == ["persistent_pain", "mental_health"]
        assert out["name"] == s["name"] and out["locations"] == s["locations"]
        events = await query(
            directory_sessions, "SELECT payload FROM outbox WHERE key = :k ORDER BY seq", k=s["id"]
        )
        data = events[-1].payload["data"]
        assert events[-1].payload["type"] == "uk.waymark.directory.service.updated"
        assert data["waiting_weeks"] == 12 and data["status"] == "temporarily closed"
        assert data["conditions"] == ["persistent_pain", "mental_health"]

    async def test_a_stale_if_match_is_412(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        s = await create(directory_client, p)
        r = await directory_client.patch(
            f"/services/{s['id']}",
            json={"name": "New name"},
            headers=dict(p.headers, **{"If-Match": 'W/"7"'}),
        )
        assert_problem(r, 412, "version 1")
        r = await directory_client.patch(
            f"/services/{s['id']}",
            json={"name": "New name"},
            headers=dict(p.headers, **{"If-Match": "garbage"}),
        )
        assert_problem(r, 412)

    async def test_lists_replace_and_nulls_are_refused_for_required_fields(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        s = await create(directory_client, p)
        r = await directory_client.patch(
            f"/services/{s['id']}",
            headers=p.headers,
            json={
                "locations": [{"name": "Marsh Bridge Hub", "latitude": 53.72, "longitude": -1.70}],
                "delivery_modes": ["in_person", "video"],
            },
        )
        assert r.status_code == 200, r.text
        assert [loc["name"] for loc in r.json()["locations"]] == ["Marsh Bridge Hub"]
        r = await directory_client.patch(
            f"/services/{s['id']}", headers=p.headers, json={"category": None}
        )
        assert_problem(r, 422, "category cannot be null")

    async def test_a_published_service_cannot_lose_what_makes_it_usable(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        s = await create_published(directory_client, p)
        r = await directory_client.patch(
            f"/services/{s['id']}", headers=p.headers, json={"locations": []}
        )
        assert_problem(r, 422, "physical location")


class TestPostcodes:
    async def test_lookup_normalises_and_explains(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        h = auth(settings, role="clinician", org="GP-1")
        r = await directory_client.get("/postcodes/wy10bg", headers=h)
        assert r.status_code == 200 and r.json()["postcode"] == "WY1 0BG"
        assert_problem(
            await directory_client.get("/postcodes/12345", headers=h), 422, "not a UK postcode"
        )
        assert_problem(
            await directory_client.get("/postcodes/WY99%209ZZ", headers=h),
            404,
            "not in the directory",
        )
