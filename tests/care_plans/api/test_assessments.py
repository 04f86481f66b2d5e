"""The care plans API on the real PostgreSQL: assessments with their risk events written
atomically, trends, idempotency keys, and clear 4xx with nothing half-written.
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
    query,
)


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
