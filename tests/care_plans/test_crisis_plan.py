"""The person's crisis plan and crisis contacts on the care plan (#15): what to do in a crisis
and who to call, validated, versioned and audited like the rest of the plan, contact changes
audited as `contact-changed`, never in events; and the PHQ-9 assessment event naming who must
hear of a safety flag at once (the registered GP practice and the plan holder)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.care_plans.domain.contacts import contact_changes
from services.care_plans.schemas import PlanContent, stored_content
from shared.settings import Settings
from tests.care_plans.support import World, create_plan, outbox_of, phq9, plan_content, query
from tests.helpers import relate, synthetic_nhs_number
from tests.referrals.support import assert_problem

CRISIS: dict[str, Any] = {
    "plan": "Go somewhere I feel safe, ring someone on the list, use my safety box.",
    "when": "If I think about ending my life or cannot stop thinking about harming myself",
    "who_to_call": [
        {
            "id": "sister",
            "name": "Jamie Synthetic",
            "relationship": "sister",
            "phone": "07700 900321",
        },
        {
            "id": "crisis-team",
            "name": "Home treatment team",
            "role": "crisis team, 24 hours",
            "phone": "0113 496 0999",
        },
        {"id": "samaritans", "name": "Samaritans", "role": "listening line", "phone": "116 123"},
    ],
}


async def put_content(
    client: httpx.AsyncClient,
    w: World,
    plan: dict[str, Any],
    content: dict[str, Any],
    version: int,
    reason: str = "crisis plan agreed",
) -> httpx.Response:
    return await client.put(
        f"/care-plans/{plan['id']}",
        json={"content": content, "reason": reason},
        headers={**w.holder_h(), "If-Match": f'W/"{version}"'},
    )


class TestAssessmentNamesWhoMustHear:
    async def test_a_phq9_event_names_the_registered_practice_and_the_plan_holder(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        nhs = synthetic_nhs_number()
        practice = "GP-REG1"
        await relate(settings, nhs, "SVC-OTHER", registered_practice=practice)
        plan = await create_plan(care_plans_client, w, nhs_number=nhs)
        r = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            headers=w.holder_h(),
            json={"instrument": "PHQ-9", "answers": phq9(6, 1)},
        )
        assert r.status_code == 201, r.text
        rows = [
            r
            for r in await outbox_of(care_plans_sessions, plan["patient_id"])
            if r.event_type == "uk.waymark.care-plan.assessment.recorded"
        ]
        data = rows[0].payload["data"]
        assert data["safety_flag"] is True
        assert (data["registered_practice"], data["holder_org"]) == (practice, w.holder)

    async def test_without_a_known_practice_the_event_names_the_holder_only(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            headers=w.holder_h(),
            json={"instrument": "PHQ-9", "answers": phq9(3, 0)},
        )
        assert r.status_code == 201, r.text
        rows = [
            r
            for r in await outbox_of(care_plans_sessions, plan["patient_id"])
            if r.event_type == "uk.waymark.care-plan.assessment.recorded"
        ]
        data = rows[0].payload["data"]
        assert (data["registered_practice"], data["holder_org"]) == (None, w.holder)


class TestCrisisPlan:
    async def test_it_is_kept_versioned_and_read_on_its_own(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await put_content(care_plans_client, w, plan, plan_content(crisis=CRISIS), 1)
        assert r.status_code == 200, r.text
        assert r.json()["content"]["crisis"]["who_to_call"][0]["relationship"] == "sister"
        r = await care_plans_client.get(
            f"/care-plans/{plan['id']}/crisis-plan", headers=w.holder_h()
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["plan_id"], body["patient_id"], body["version"]) == (
            plan["id"],
            plan["patient_id"],
            2,
        )
        assert body["plan"] == CRISIS["plan"] and body["when"] == CRISIS["when"]
        assert [
            (c["id"], c["name"], c["relationship"], c["role"], c["phone"]) for c in body["contacts"]
        ] == [
            ("sister", "Jamie Synthetic", "sister", None, "07700 900321"),
            ("crisis-team", "Home treatment team", None, "crisis team, 24 hours", "0113 496 0999"),
            ("samaritans", "Samaritans", None, "listening line", "116 123"),
        ]
        # version 1 is kept as it was
        old = (
            await care_plans_client.get(
                f"/care-plans/{plan['id']}/versions/1", headers=w.holder_h()
            )
        ).json()
        assert old["content"]["crisis"]["who_to_call"][0]["name"] == "Crisis line"
        audit = await query(
            care_plans_sessions,
            "SELECT actor_org, detail FROM audit_log "
            "WHERE resource_id = :p AND resource_type = 'CarePlanCrisis'",
            p=plan["id"],
        )
        assert [(a.actor_org, "crisis plan" in a.detail) for a in audit] == [(w.holder, True)]

    async def test_a_coordinator_of_the_ics_reads_it_by_the_persons_id_audited(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w, content=plan_content(crisis=CRISIS))
        coordinator = w.as_("ICS-COORD", role="coordinator", sub="coord-crisis")
        r = await care_plans_client.get(
            f"/patients/{plan['patient_id']}/crisis-plan", headers=coordinator
        )
        assert r.status_code == 200, r.text
        assert len(r.json()["contacts"]) == 3 and r.json()["access"] == "ics_coordination"
        audit = await query(
            care_plans_sessions,
            "SELECT actor, action FROM audit_log "
            "WHERE resource_id = :p AND resource_type = 'CarePlanCrisis'",
            p=plan["id"],
        )
        assert [(a.actor, a.action) for a in audit] == [("coord-crisis", "read")]

    async def test_anyone_without_a_relationship_hears_what_an_absent_plan_gets(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w, content=plan_content(crisis=CRISIS))
        r = await care_plans_client.get(
            f"/patients/{plan['patient_id']}/crisis-plan", headers=w.as_(w.outsider)
        )
        assert_problem(r, 404)
        assert "Jamie" not in r.text
        absent = await care_plans_client.get(
            "/patients/pt_nobody_here/crisis-plan", headers=w.as_(w.outsider)
        )
        assert_problem(absent, 404)
        denied = await query(
            care_plans_sessions,
            "SELECT action FROM audit_log WHERE patient_id = :p AND action = 'read-denied'",
            p=plan["patient_id"],
        )
        assert denied

    @pytest.mark.parametrize(
        "phone", ["call my sister", "12", "0800 abc 123", "+1 555 123 4567", "0113 496 09991234"]
    )
    async def test_numbers_that_are_not_uk_phone_numbers_are_refused(
        self, care_plans_client: httpx.AsyncClient, settings: Settings, phone: str
    ) -> None:
        w = World(settings)
        crisis = {"who_to_call": [{"name": "Someone", "phone": phone}]}
        r = await care_plans_client.post(
            "/care-plans",
            headers=w.holder_h(),
            json={"nhs_number": "9434765919", "content": plan_content(crisis=crisis)},
        )
        assert_problem(r, 422)

    @pytest.mark.parametrize(
        "phone", ["999", "111", "116 123", "0800 689 5652", "+44 113 496 0999", "(0113) 496-0999"]
    )
    def test_uk_numbers_and_national_crisis_lines_are_accepted(self, phone: str) -> None:
        content = PlanContent.model_validate(
            {"crisis": {"who_to_call": [{"name": "Line", "phone": phone}]}}
        )
        assert content.crisis.who_to_call[0].phone == phone.strip()

    def test_size_limits(self) -> None:
        many = [{"name": f"Contact {i}", "phone": "111"} for i in range(11)]
        with pytest.raises(ValueError, match="10"):
            PlanContent.model_validate({"crisis": {"who_to_call": many}})
        with pytest.raises(ValueError):
            PlanContent.model_validate({"crisis": {"plan": "x" * 5001}})
        with pytest.raises(ValueError, match="unique"):
            PlanContent.model_validate(
                {
                    "crisis": {
                        "who_to_call": [
                            {"id": "a", "name": "A", "phone": "111"},
                            {"id": "a", "name": "B", "phone": "999"},
                        ]
                    }
                }
            )

    def test_a_version_stored_before_numbers_were_checked_still_reads(self) -> None:
        legacy = {
            "crisis": {
                "who_to_call": [{"name": "Mum", "role": None, "phone": "ask at reception"}],
                "when": None,
                "plan": None,
            }
        }
        with pytest.raises(ValueError):
            PlanContent.model_validate(legacy)
        content = stored_content(legacy)
        assert content.crisis.who_to_call[0].phone == "ask at reception"

    async def test_changing_a_crisis_contact_is_audited_as_a_contact_change(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w, content=plan_content(crisis=CRISIS))
        changed = {
            **CRISIS,
            "who_to_call": [
                {**CRISIS["who_to_call"][0], "phone": "07700 900999"},
                *CRISIS["who_to_call"][1:],
            ],
        }
        r = await put_content(
            care_plans_client, w, plan, plan_content(crisis=changed), 1, reason="new number"
        )
        assert r.status_code == 200, r.text
        assert "crisis contact sister" in r.json()["reason"]
        audit = await query(
            care_plans_sessions,
            "SELECT detail FROM audit_log WHERE patient_id = :p AND action = 'contact-changed'",
            p=plan["patient_id"],
        )
        assert len(audit) == 1 and "crisis contact sister" in audit[0].detail
        # the audit names the contact's id, never their number or name
        assert "07700" not in audit[0].detail and "Jamie" not in audit[0].detail

    async def test_the_crisis_plan_never_travels_in_events(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w, content=plan_content(crisis=CRISIS))
        await put_content(
            care_plans_client,
            w,
            plan,
            plan_content(crisis={**CRISIS, "plan": "Ring Jamie first."}),
            1,
        )
        rows = await outbox_of(care_plans_sessions, plan["patient_id"])
        assert rows
        for r in rows:
            text = str(r.payload)
            assert "Jamie" not in text and "07700" not in text and "safety box" not in text

    async def test_the_fhir_care_plan_carries_the_crisis_plan(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w, content=plan_content(crisis=CRISIS))
        r = await care_plans_client.get(f"/fhir/CarePlan/{plan['id']}", headers=w.holder_h())
        assert r.status_code == 200, r.text
        notes = [n["text"] for n in r.json()["note"]]
        crisis = next(n for n in notes if n.startswith("Crisis plan"))
        assert CRISIS["plan"] in crisis and CRISIS["when"] in crisis
        assert "Jamie Synthetic (sister): 07700 900321" in crisis
        assert "Samaritans (listening line): 116 123" in crisis


class TestContactChanges:
    def test_crisis_contacts_added_removed_and_changed_are_named_by_id(self) -> None:
        before = {
            "crisis": {
                "who_to_call": [
                    {"id": "a", "name": "A", "phone": "111"},
                    {"id": "b", "name": "B", "phone": "999"},
                ]
            }
        }
        after = {
            "crisis": {
                "who_to_call": [
                    {"id": "a", "name": "A", "phone": "116 123"},
                    {"id": "c", "name": "C", "phone": "111"},
                ]
            }
        }
        assert contact_changes(before, after) == [
            "crisis contact a",
            "crisis contact b",
            "crisis contact c",
        ]

    def test_the_crisis_plan_text_is_not_a_contact_change(self) -> None:
        before = {"crisis": {"plan": "one", "who_to_call": []}}
        after = {"crisis": {"plan": "two", "who_to_call": []}}
        assert contact_changes(before, after) == []

    def test_contacts_without_ids_keep_one_made_from_name_and_number(self) -> None:
        before = {"crisis": {"who_to_call": [{"name": "A", "phone": "111"}]}}
        # what the API stores when a client sends a contact without an id
        stored = PlanContent.model_validate(before).model_dump(mode="json")
        assert stored["crisis"]["who_to_call"][0]["id"].startswith("cc-")
        assert contact_changes(before, stored) == []
        assert (
            contact_changes(stored, PlanContent.model_validate(before).model_dump(mode="json"))
            == []
        )
        moved = {"crisis": {"who_to_call": [{"name": "A", "phone": "999"}]}}
        assert len(contact_changes(before, moved)) == 2  # one gone, one new
