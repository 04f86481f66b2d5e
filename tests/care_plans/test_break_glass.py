"""Break-glass: a clinician of the person's ICS reads a plan outside the usual relationships,
with a stated reason and a time limit; audited, and the ICS's information governance team
hears of it. And the takeover of issue #14: nobody without a care relationship starts, reads
or changes a plan, and a refusal tells nothing about whether one exists."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.notifications.effects import apply_event
from shared.db import make_engine, make_sessionmaker, unit_of_work
from shared.events.envelope import CloudEvent
from shared.events.registry import REGISTRY
from shared.settings import Settings
from tests.care_plans.support import World, create_plan, gad7, outbox_of, plan_content, query
from tests.helpers import relate, synthetic_nhs_number

BREAK = {"reason_code": "emergency-care", "reason": "Unconscious in A&E, plan needed now"}


class TestTakeover:
    async def test_an_unrelated_clinician_cannot_start_a_plan_and_cannot_tell_if_one_exists(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        nobody = synthetic_nhs_number()
        answers = []
        for nhs in (plan["_nhs_number"], nobody):
            for ics in (w.ics, "ICS-ELSEWHERE"):
                r = await care_plans_client.post(
                    "/care-plans",
                    headers=w.as_("GP-Z99999", ics=ics),
                    json={"nhs_number": nhs, "content": plan_content(), "reason": "taking over"},
                )
                answers.append((r.status_code, r.json()["detail"], r.json()["reason"]))
        assert {a[0] for a in answers} == {403} and len(set(answers)) == 1, answers
        assert answers[0][2] == "no_relationship"
        # the refused probes are audited, the one at a real person's plan under their pseudonym
        audit = await query(
            care_plans_sessions,
            "SELECT action FROM audit_log WHERE actor_org = 'GP-Z99999' AND patient_id = :p",
            p=plan["patient_id"],
        )
        assert [a.action for a in audit] == ["create-denied", "create-denied"]
        # the plan is untouched and still its holder's
        r = await care_plans_client.get(f"/care-plans/{plan['id']}", headers=w.holder_h())
        assert r.json()["version"] == 1 and r.json()["holder_org"] == w.holder

    async def test_an_unrelated_clinician_cannot_record_a_safety_result_or_change_contact(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        attacker = w.as_("GP-Z99999", ics="ICS-ELSEWHERE")
        r = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            headers=attacker,
            json={"instrument": "PHQ-9", "answers": {str(i): 3 for i in range(1, 10)}},
        )
        assert r.status_code == 404
        content = plan_content(communication={"email": "attacker@example.org"})
        r = await care_plans_client.put(
            f"/care-plans/{plan['id']}",
            headers={**attacker, "If-Match": 'W/"1"'},
            json={"content": content, "reason": "new email"},
        )
        assert r.status_code == 404
        assert (
            await query(
                care_plans_sessions, "SELECT 1 FROM assessment WHERE plan_id = :p", p=plan["id"]
            )
            == []
        )
        events = [e.event_type for e in await outbox_of(care_plans_sessions, plan["patient_id"])]
        assert "uk.waymark.care-plan.risk.flagged" not in events

    async def test_the_registered_gp_practice_is_a_relationship(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        practice = f"GP-{uuid.uuid4().hex[:6].upper()}"
        assert (
            await care_plans_client.get(f"/care-plans/{plan['id']}", headers=w.as_(practice))
        ).status_code == 404
        # a referral from elsewhere names the person's practice (as e-RS and PDS carry it)
        await relate(settings, plan["_nhs_number"], w.consented, registered_practice=practice)
        r = await care_plans_client.get(f"/care-plans/{plan['id']}", headers=w.as_(practice))
        assert r.status_code == 200 and r.json()["access"] == "registered_gp"

    async def test_a_change_of_contact_details_is_audited_and_shown_to_the_care_team(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        content = plan_content(
            communication={"email": "new@example.org", "preferred_channel": "email"}
        )
        r = await care_plans_client.put(
            f"/care-plans/{plan['id']}",
            headers={**w.holder_h(), "If-Match": 'W/"1"'},
            json={"content": content, "reason": "moved house"},
        )
        assert r.status_code == 200, r.text
        versions = (
            await care_plans_client.get(
                f"/care-plans/{plan['id']}/versions", headers=w.as_(w.consented)
            )
        ).json()
        assert "contact details changed: person's email" in versions[-1]["reason"]
        audit = await query(
            care_plans_sessions,
            "SELECT actor_org, detail FROM audit_log "
            "WHERE patient_id = :p AND action = 'contact-changed'",
            p=plan["patient_id"],
        )
        assert [(a.actor_org, "person's email" in a.detail) for a in audit] == [(w.holder, True)]


class TestBreakGlass:
    async def test_a_clinician_of_the_ics_reads_for_a_while_audited_and_reported(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        ed = w.as_("ED-RTH")
        assert (
            await care_plans_client.get(f"/care-plans/{plan['id']}", headers=ed)
        ).status_code == 404
        r = await care_plans_client.post(
            "/care-plans/break-glass", headers=ed, json={"nhs_number": plan["_nhs_number"], **BREAK}
        )
        assert r.status_code == 201, r.text
        grant = r.json()
        assert grant["plan_id"] == plan["id"] and "information governance" in grant["notice"]
        r = await care_plans_client.get(f"/care-plans/{plan['id']}", headers=ed)
        assert r.status_code == 200 and r.json()["access"] == "break_glass"
        # reading is all it gives
        r = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            headers=ed,
            json={"instrument": "GAD-7", "answers": gad7(3)},
        )
        assert r.status_code == 403
        audit = await query(
            care_plans_sessions,
            "SELECT action, detail FROM audit_log "
            "WHERE patient_id = :p AND actor_org = 'ED-RTH' ORDER BY at",
            p=plan["patient_id"],
        )
        assert audit[0].action == "read-denied" and audit[1].action == "break-glass"
        assert BREAK["reason"] in audit[1].detail and "emergency-care" in audit[1].detail
        assert any(a.action == "read" and "access: break_glass" in a.detail for a in audit)
        rows = [
            e
            for e in await outbox_of(care_plans_sessions, plan["patient_id"])
            if e.event_type == "uk.waymark.care-plan.break-glass"
        ]
        assert len(rows) == 1
        data = rows[0].payload["data"]
        assert (data["org"], data["reason_code"], data["grant_id"]) == (
            "ED-RTH",
            "emergency-care",
            grant["grant_id"],
        )
        assert BREAK["reason"] not in str(rows[0].payload)  # free text never in events

        # the grant runs out
        async with unit_of_work(care_plans_sessions) as session:
            await session.exec(
                text(  # type: ignore[call-overload]
                    "UPDATE break_glass_grant SET granted_at = now() - interval '2 hours', "
                    "expires_at = now() - interval '1 second' WHERE id = :g"
                ).bindparams(g=grant["grant_id"])
            )
        assert (
            await care_plans_client.get(f"/care-plans/{plan['id']}", headers=ed)
        ).status_code == 404

        # the event reaches the ICS's information governance team inbox, once
        event = CloudEvent.model_validate(rows[0].payload)
        engine = make_engine(settings, "notifications")
        try:
            sessions = make_sessionmaker(engine)
            for _ in range(2):
                async with unit_of_work(sessions) as session:
                    if not await query(
                        sessions,
                        "SELECT 1 FROM inbox_item WHERE body LIKE :b",
                        b=f"%{grant['grant_id']}%",
                    ):
                        await apply_event(
                            session=session,
                            event=event,
                            data=REGISTRY.parse(event),
                            settings=settings,
                        )
            items = await query(
                sessions,
                "SELECT owner, subject, body FROM inbox_item WHERE body LIKE :b",
                b=f"%{grant['grant_id']}%",
            )
        finally:
            await engine.dispose()
        assert [(i.owner, i.subject) for i in items] == [
            (f"org:{settings.ig_org}", "Break-glass access to a care plan by ED-RTH")
        ]
        assert BREAK["reason"] not in items[0].body

    async def test_only_a_clinician_of_the_persons_ics_may_and_absent_is_absent(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        body = {"nhs_number": plan["_nhs_number"], **BREAK}
        far = await care_plans_client.post(
            "/care-plans/break-glass", json=body, headers=w.as_("ED-FAR", ics="ICS-ELSEWHERE")
        )
        absent = await care_plans_client.post(
            "/care-plans/break-glass",
            headers=w.as_("ED-FAR", ics="ICS-ELSEWHERE"),
            json={**body, "nhs_number": synthetic_nhs_number()},
        )
        assert far.status_code == absent.status_code == 404
        assert far.json()["detail"] == absent.json()["detail"]
        for role in ("service_staff", "coordinator", "partner", "admin", "ics_lead"):
            r = await care_plans_client.post(
                "/care-plans/break-glass", json=body, headers=w.as_("ED-RTH", role)
            )
            assert r.status_code == 403 and r.json()["reason"] == "role", (role, r.text)
        bad = await care_plans_client.post(
            "/care-plans/break-glass",
            headers=w.as_("ED-RTH"),
            json={**body, "reason_code": "curious"},
        )
        assert bad.status_code == 422
        audit = await query(
            care_plans_sessions,
            "SELECT action FROM audit_log WHERE patient_id = :p AND actor_org = 'ED-FAR'",
            p=plan["patient_id"],
        )
        assert [a.action for a in audit] == ["break-glass-denied"]
        assert (
            await query(
                care_plans_sessions,
                "SELECT 1 FROM break_glass_grant WHERE plan_id = :p",
                p=plan["id"],
            )
            == []
        )
