"""The care plans API on the real PostgreSQL: starting a plan (one per person), consent and
its audit, the summary a consented service reads, and idempotent creates.
"""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.settings import Settings
from tests.care_plans.support import (
    World,
    create_plan,
    gad7,
    outbox_of,
    plan_content,
    query,
)
from tests.helpers import relate, synthetic_nhs_number


class TestCreatePlan:
    async def test_creates_version_1_with_its_events_in_the_outbox(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        assert plan["version"] == 1 and plan["holder_org"] == w.holder
        assert plan["patient_id"].startswith("pt_")
        assert plan["content"]["goals"][0]["id"] == "walk"
        rows = await outbox_of(care_plans_sessions, plan["patient_id"])
        assert [r.event_type for r in rows] == [
            "uk.waymark.care-plan.created",
            "uk.waymark.care-plan.consent.changed",
        ]
        consent = rows[1].payload["data"]
        assert consent == {
            "plan_id": plan["id"],
            "organisations": [w.consented],
            "carers_with_access": 1,
        }
        # events carry no plan content nor NHS number
        assert all("allotment" not in str(r.payload) for r in rows)

    async def test_one_plan_per_person(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        nhs = synthetic_nhs_number()
        await create_plan(care_plans_client, w, nhs_number=nhs)
        r = await care_plans_client.post(
            "/care-plans", json={"nhs_number": nhs}, headers=w.holder_h()
        )
        assert r.status_code == 409

    async def test_an_invalid_nhs_number_is_refused(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await care_plans_client.post(
            "/care-plans", json={"nhs_number": "1234567890"}, headers=World(settings).holder_h()
        )
        assert r.status_code == 422 and "Modulus 11" in r.json()["detail"]

    async def test_a_partner_may_not_create(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        r = await care_plans_client.post(
            "/care-plans",
            json={"nhs_number": synthetic_nhs_number()},
            headers=w.as_(w.holder, "partner"),
        )
        assert r.status_code == 403


class TestConsent:
    async def test_a_read_by_the_care_team_without_consent_is_403_naming_the_reason_and_audited(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        # the outsider's organisation has a referral for the person: care team, no consent
        await relate(settings, plan["_nhs_number"], w.outsider)
        r = await care_plans_client.get(f"/care-plans/{plan['id']}", headers=w.as_(w.outsider))
        assert r.status_code == 403
        assert r.json()["reason"] == "no_consent"
        assert f"not consented to organisation {w.outsider}" in r.json()["detail"]
        audit = await query(
            care_plans_sessions,
            "SELECT actor_org, action, detail FROM audit_log WHERE patient_id = :p ORDER BY at",
            p=plan["patient_id"],
        )
        assert (w.outsider, "read-denied") in [(a.actor_org, a.action) for a in audit]

    async def test_a_read_with_no_relationship_is_the_404_of_a_plan_that_does_not_exist(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        missing = str(uuid.uuid4())
        for org, ics in ((w.outsider, w.ics), ("GP-FAR", "ICS-ELSEWHERE")):
            for path in ("", "/summary", "/timeline", "/versions", "/assessments"):
                mine = await care_plans_client.get(
                    f"/care-plans/{plan['id']}{path}", headers=w.as_(org, ics=ics)
                )
                absent = await care_plans_client.get(
                    f"/care-plans/{missing}{path}", headers=w.as_(org, ics=ics)
                )
                assert mine.status_code == absent.status_code == 404, (path, mine.text)
                assert mine.json()["detail"].replace(plan["id"], "X") == absent.json()[
                    "detail"
                ].replace(missing, "X")
            by_patient = await care_plans_client.get(
                f"/patients/{plan['patient_id']}/care-plan", headers=w.as_(org, ics=ics)
            )
            nobody = await care_plans_client.get(
                f"/patients/pt_{uuid.uuid4().hex}/care-plan", headers=w.as_(org, ics=ics)
            )
            assert by_patient.status_code == nobody.status_code == 404
        audit = await query(
            care_plans_sessions,
            "SELECT actor_org, action FROM audit_log WHERE patient_id = :p",
            p=plan["patient_id"],
        )
        assert {(w.outsider, "read-denied"), ("GP-FAR", "read-denied")} <= {
            (a.actor_org, a.action) for a in audit
        }

    async def test_every_allowed_read_is_audited_with_why(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        for headers in (w.as_(w.consented), w.as_(new := "ICB-X1", "coordinator")):
            r = await care_plans_client.get(f"/care-plans/{plan['id']}", headers=headers)
            assert r.status_code == 200
        other_ics = await care_plans_client.get(
            f"/care-plans/{plan['id']}", headers=w.as_("ICB-X2", "coordinator", ics="ICS-OTHER")
        )
        assert other_ics.status_code == 404
        reads = await query(
            care_plans_sessions,
            "SELECT actor_org, detail FROM audit_log WHERE patient_id = :p "
            "AND action = 'read' ORDER BY at",
            p=plan["patient_id"],
        )
        assert [(a.actor_org, a.detail.split("access: ")[1]) for a in reads] == [
            (w.consented, "consent"),
            (new, "ics_coordination"),
        ]

    async def test_withdrawing_consent_is_an_event_and_takes_effect_at_once(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await care_plans_client.put(
            f"/care-plans/{plan['id']}/consent",
            json={"organisations": [w.outsider], "reason": "person moved to talking therapies"},
            headers={**w.holder_h(), "If-Match": 'W/"1"'},
        )
        assert r.status_code == 200, r.text
        assert r.json()["consented_organisations"] == [w.outsider]
        # no longer consented and no other relationship: as if there were no plan
        assert (
            await care_plans_client.get(f"/care-plans/{plan['id']}", headers=w.as_(w.consented))
        ).status_code == 404
        assert (
            await care_plans_client.get(
                f"/care-plans/{plan['id']}/summary", headers=w.as_(w.outsider)
            )
        ).status_code == 200
        rows = await outbox_of(care_plans_sessions, plan["patient_id"])
        consent = [
            r.payload["data"]
            for r in rows
            if r.event_type == "uk.waymark.care-plan.consent.changed"
        ]
        assert consent[-1]["organisations"] == [w.outsider]
        d = (
            await care_plans_client.get(
                f"/care-plans/{plan['id']}/diff?from=1&to=2", headers=w.holder_h()
            )
        ).json()
        assert d["changes"] == [
            {
                "op": "changed",
                "path": "/consented_organisations/0",
                "before": w.consented,
                "after": w.outsider,
            }
        ]

    async def test_a_carers_access_change_is_a_consent_event(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        content = plan_content()
        content["carers"][0]["may_see"] = []
        r = await care_plans_client.put(
            f"/care-plans/{plan['id']}",
            json={"content": content, "reason": "carer access"},
            headers={**w.holder_h(), "If-Match": 'W/"1"'},
        )
        assert r.status_code == 200
        rows = await outbox_of(care_plans_sessions, plan["patient_id"])
        assert rows[-1].event_type == "uk.waymark.care-plan.consent.changed"
        assert rows[-1].payload["data"]["carers_with_access"] == 0

    async def test_tell_it_once_summary_for_a_consented_service(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            json={"instrument": "GAD-7", "answers": gad7(12)},
            headers=w.holder_h(),
        )
        r = await care_plans_client.get(
            f"/patients/{plan['patient_id']}/care-plan", headers=w.as_(w.consented)
        )
        assert r.status_code == 200
        s = (
            await care_plans_client.get(
                f"/care-plans/{plan['id']}/summary", headers=w.as_(w.consented)
            )
        ).json()
        assert s["communication"]["language"] == "Polish"
        assert [g["id"] for g in s["active_goals"]] == ["walk"]
        assert [(a["instrument"], a["band"]) for a in s["latest_assessments"]] == [
            ("GAD-7", "moderate")
        ]


class TestIdempotentCreateWithNewItems:
    async def test_a_retried_create_whose_goals_have_no_ids_replays_the_first_response(
        self, care_plans_client, settings
    ):
        from tests.conftest import auth
        from tests.helpers import synthetic_nhs_number

        body = {
            "nhs_number": synthetic_nhs_number(),
            "content": {"goals": [{"what": "walk to the shops"}]},
        }
        headers = {
            **auth(settings, role="clinician", org="GP-IDEM"),
            "Idempotency-Key": "plan-retry-1",
        }
        await relate(settings, body["nhs_number"], "GP-IDEM")
        first = await care_plans_client.post("/care-plans", json=body, headers=headers)
        again = await care_plans_client.post("/care-plans", json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers.get("idempotent-replayed") == "true"
