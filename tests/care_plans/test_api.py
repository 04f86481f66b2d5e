"""The care plans API on the real PostgreSQL: versions and diffs, If-Match, consent and audit,
assessments with their risk events written atomically, and clear 4xx with nothing half-written.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.care_plans.handlers.assessments import record_assessment
from services.care_plans.schemas import AssessmentIn
from shared.auth import Principal, Role
from shared.db import unit_of_work
from shared.settings import Settings
from tests.care_plans.support import (
    World,
    create_plan,
    gad7,
    outbox_of,
    phq9,
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


class TestVersions:
    async def test_every_change_is_a_new_immutable_version_and_any_two_compare(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        pid = plan["id"]
        content = plan_content(what_matters_to_me="Sleeping through the night.")
        r = await care_plans_client.put(
            f"/care-plans/{pid}",
            json={"content": content, "reason": "review"},
            headers={**w.holder_h(), "If-Match": 'W/"1"'},
        )
        assert r.status_code == 200, r.text
        assert r.headers["etag"] == 'W/"2"' and r.json()["reason"] == "review"
        # a consented organisation adds a goal
        goals = [
            *content["goals"],
            {"id": "sleep", "what": "Sleep 6 hours", "owner": "person", "status": "proposed"},
        ]
        r = await care_plans_client.put(
            f"/care-plans/{pid}",
            json={"content": {**content, "goals": goals}, "reason": "pain clinic"},
            headers={**w.as_(w.consented), "If-Match": 'W/"2"'},
        )
        assert r.status_code == 200, r.text

        versions = (
            await care_plans_client.get(f"/care-plans/{pid}/versions", headers=w.holder_h())
        ).json()
        assert [(v["version"], v["author_org"], v["reason"]) for v in versions] == [
            (1, w.holder, "first conversation"),
            (2, w.holder, "review"),
            (3, w.consented, "pain clinic"),
        ]
        current = await care_plans_client.get(f"/care-plans/{pid}", headers=w.holder_h())
        assert current.json()["version"] == 3 and current.headers["etag"] == 'W/"3"'
        old = (
            await care_plans_client.get(f"/care-plans/{pid}/versions/1", headers=w.holder_h())
        ).json()
        assert old["content"]["what_matters_to_me"].startswith("Getting back")

        d = (
            await care_plans_client.get(f"/care-plans/{pid}/diff?from=1&to=3", headers=w.holder_h())
        ).json()
        assert d["changes"] == [
            {
                "op": "added",
                "path": "/goals/1",
                "before": None,
                "after": {
                    "id": "sleep",
                    "what": "Sleep 6 hours",
                    "by_when": None,
                    "owner": "person",
                    "owner_name": None,
                    "status": "proposed",
                },
            },
            {
                "op": "changed",
                "path": "/what_matters_to_me",
                "before": plan["content"]["what_matters_to_me"],
                "after": "Sleeping through the night.",
            },
        ]
        rows = await outbox_of(care_plans_sessions, plan["patient_id"])
        assert [
            r.payload["data"].get("version")
            for r in rows
            if r.event_type == "uk.waymark.care-plan.updated"
        ] == [2, 3]
        # the database refuses to rewrite history
        with pytest.raises(Exception, match="immutable"):
            async with unit_of_work(care_plans_sessions) as s:
                await s.exec(
                    __import__("sqlalchemy")
                    .text(  # type: ignore[call-overload]
                        "UPDATE care_plan_version SET reason = 'x' WHERE plan_id = :p"
                    )
                    .bindparams(p=pid)
                )

    async def test_a_stale_if_match_is_412_and_nothing_is_written(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        body = {"content": plan_content(), "reason": "x"}
        ok = await care_plans_client.put(
            f"/care-plans/{plan['id']}", json=body, headers={**w.holder_h(), "If-Match": 'W/"1"'}
        )
        assert ok.status_code == 200
        stale = await care_plans_client.put(
            f"/care-plans/{plan['id']}", json=body, headers={**w.holder_h(), "If-Match": 'W/"1"'}
        )
        assert stale.status_code == 412 and stale.json()["current_version"] == 2
        missing = await care_plans_client.put(
            f"/care-plans/{plan['id']}", json=body, headers=w.holder_h()
        )
        assert missing.status_code == 428
        assert (
            len(
                await query(
                    care_plans_sessions,
                    "SELECT 1 FROM care_plan_version WHERE plan_id = :p",
                    p=plan["id"],
                )
            )
            == 2
        )

    async def test_a_version_that_does_not_exist_is_404(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await care_plans_client.get(
            f"/care-plans/{plan['id']}/diff?from=1&to=9", headers=w.holder_h()
        )
        assert r.status_code == 404


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


class TestAssessments:
    async def test_phq9_item_9_flags_urgent_risk_in_the_same_transaction(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            json={"instrument": "PHQ-9", "answers": phq9(22, 1)},
            headers=w.as_(w.consented),
        )
        assert r.status_code == 201, r.text
        a = r.json()
        assert (a["total"], a["band"], a["safety_flag"]) == (22, "severe", True)
        assert a["risk_flags"] == [
            {"reason": "phq9_item9", "severity": "urgent"},
            {"reason": "high_risk_band", "severity": "high"},
        ]
        rows = await outbox_of(care_plans_sessions, plan["patient_id"])
        recorded = [
            r.payload["data"]
            for r in rows
            if r.event_type == "uk.waymark.care-plan.assessment.recorded"
        ]
        assert recorded == [
            {
                "plan_id": plan["id"],
                "assessment_id": a["id"],
                "instrument": "PHQ-9",
                "total": 22,
                "band": "severe",
                "subscale": None,
                "safety_flag": True,
                # who must hear at once: the holder (recorded by a consented
                # organisation); no referral has named a GP practice
                "registered_practice": None,
                "holder_org": w.holder,
            }
        ]
        risks = [
            r.payload["data"] for r in rows if r.event_type == "uk.waymark.care-plan.risk.flagged"
        ]
        assert [(x["reason"], x["severity"], x["band"]) for x in risks] == [
            ("phq9_item9", "urgent", "severe"),
            ("high_risk_band", "high", "severe"),
        ]

    async def test_start_back_high_records_its_subscale_and_flags_high_risk(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        answers = {str(i): "agree" if i >= 5 else "disagree" for i in range(1, 9)}
        answers["9"] = "extremely"
        r = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            json={"instrument": "STarT-Back", "answers": answers},
            headers=w.holder_h(),
        )
        a = r.json()
        assert (a["total"], a["subscale"], a["band"]) == (5, 5, "high")
        rows = await outbox_of(care_plans_sessions, plan["patient_id"])
        assert [
            r.payload["data"]["reason"]
            for r in rows
            if r.event_type == "uk.waymark.care-plan.risk.flagged"
        ] == ["high_risk_band"]

    async def test_a_failure_after_the_assessment_insert_leaves_neither_it_nor_its_events(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        principal = Principal(user="u1", roles=frozenset({Role.CLINICIAN}), org=w.holder, ics=w.ics)
        staged: list[str] = []
        with pytest.raises(RuntimeError, match="after the insert"):
            async with unit_of_work(care_plans_sessions) as session:
                recorded = await record_assessment(
                    session=session,
                    principal=principal,
                    plan_id=plan["id"],
                    cmd=AssessmentIn(instrument="PHQ-9", answers=phq9(3, 3)),
                    settings=settings,
                )
                await session.flush()  # the rows are in the database's transaction
                staged = [e.type for e in recorded.events]
                assert await session.get(type(recorded.assessment), recorded.assessment.id)
                raise RuntimeError("failure after the insert")
        assert staged == [
            "uk.waymark.care-plan.assessment.recorded",
            "uk.waymark.care-plan.risk.flagged",
        ]
        assert (
            await query(
                care_plans_sessions, "SELECT 1 FROM assessment WHERE plan_id = :p", p=plan["id"]
            )
            == []
        )
        assert [r.event_type for r in await outbox_of(care_plans_sessions, plan["patient_id"])] == [
            "uk.waymark.care-plan.created",
            "uk.waymark.care-plan.consent.changed",
        ]

    @pytest.mark.parametrize(
        ("body", "detail"),
        [
            (
                {"instrument": "PHQ-9", "answers": {**phq9(0), "3": 4}},
                "item 3: answer out of range",
            ),
            (
                {"instrument": "PHQ-9", "answers": {k: v for k, v in phq9(0).items() if k != "9"}},
                "missing item(s): 9",
            ),
            ({"instrument": "PHQ-2", "answers": {"1": 0, "2": 0}}, "unknown instrument"),
            (
                {"instrument": "STarT-Back", "answers": {str(i): "agree" for i in range(1, 10)}},
                "item 9: answer out of range",
            ),
        ],
    )
    async def test_bad_answers_are_422_and_nothing_is_written(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
        body: dict,
        detail: str,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments", json=body, headers=w.holder_h()
        )
        assert r.status_code == 422 and detail in r.json()["detail"]
        assert (
            await query(
                care_plans_sessions, "SELECT 1 FROM assessment WHERE plan_id = :p", p=plan["id"]
            )
            == []
        )
        assert len(await outbox_of(care_plans_sessions, plan["patient_id"])) == 2

    async def test_an_assessment_without_consent_is_403_and_not_written(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            json={"instrument": "GAD-7", "answers": gad7(3)},
            headers=w.as_(w.outsider),
        )
        assert r.status_code == 404
        assert (
            await query(
                care_plans_sessions, "SELECT 1 FROM assessment WHERE plan_id = :p", p=plan["id"]
            )
            == []
        )

    async def test_history_per_instrument_reports_the_trend_and_reliable_change(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        for when, total in [
            ("2026-01-05T10:00:00Z", 21),
            ("2026-02-05T10:00:00Z", 15),
            ("2026-03-05T10:00:00Z", 12),
        ]:
            r = await care_plans_client.post(
                f"/care-plans/{plan['id']}/assessments",
                json={"instrument": "PHQ-9", "answers": phq9(total), "authored": when},
                headers=w.holder_h(),
            )
            assert r.status_code == 201
        await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            json={"instrument": "GAD-7", "answers": gad7(8)},
            headers=w.holder_h(),
        )
        h = (
            await care_plans_client.get(
                f"/care-plans/{plan['id']}/assessments?instrument=PHQ-9", headers=w.holder_h()
            )
        ).json()
        assert len(h) == 1 and h[0]["direction"] == "improving"
        assert h[0]["reliable_change_threshold"] == 6
        assert [
            (p["total"], p["band"], p["change"], p["reliable_change"]) for p in h[0]["points"]
        ] == [
            (21, "severe", None, None),
            (15, "moderately_severe", -6, "reliable_improvement"),
            (12, "moderate", -3, "no_reliable_change"),
        ]
        both = (
            await care_plans_client.get(
                f"/care-plans/{plan['id']}/assessments", headers=w.holder_h()
            )
        ).json()
        assert [x["instrument"] for x in both] == ["PHQ-9", "GAD-7"]

    async def test_idempotency_key_records_once(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        headers = {**w.as_(w.holder, sub="same-user"), "Idempotency-Key": uuid.uuid4().hex}
        body = {"instrument": "GAD-7", "answers": gad7(5)}
        first = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments", json=body, headers=headers
        )
        again = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments", json=body, headers=headers
        )
        assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
        assert (
            len(
                await query(
                    care_plans_sessions, "SELECT 1 FROM assessment WHERE plan_id = :p", p=plan["id"]
                )
            )
            == 1
        )


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
