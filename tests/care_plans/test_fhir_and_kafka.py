"""FHIR export validated with fhir.resources; events through the outbox relay to the real
Kafka; the referral timeline from referral events consumed off the real Kafka."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.care_plans.consumers import build_consumer
from shared.events.envelope import make_event
from shared.events.referrals import ReferralAccepted, ReferralBooked, ReferralSubmitted
from shared.kafka_security import client_options
from shared.outbox import OutboxRelay
from shared.settings import Settings
from shared.topics import CARE_PLANS, REFERRALS
from tests.care_plans.support import World, create_plan, phq9, query
from tests.helpers import eventually, read_topic, structured


class TestFhirExport:
    async def test_questionnaires_are_published_and_valid(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        for qid, items in [("STarT-Back", 9), ("PHQ-9", 9), ("GAD-7", 7)]:
            r = await care_plans_client.get(f"/fhir/Questionnaire/{qid}", headers=w.holder_h())
            assert r.status_code == 200 and r.headers["content-type"] == "application/fhir+json"
            q = Questionnaire.model_validate(r.json())
            assert len(q.item) == items and q.id == qid
        missing = await care_plans_client.get("/fhir/Questionnaire/PHQ-2", headers=w.holder_h())
        assert missing.status_code == 404
        assert missing.json()["resourceType"] == "OperationOutcome"

    async def test_care_plan_goal_and_questionnaire_response_export_validate(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await care_plans_client.get(f"/fhir/CarePlan/{plan['id']}", headers=w.as_(w.consented))
        cp = CarePlan.model_validate(r.json())
        assert cp.intent == "plan" and cp.meta.versionId == "1"
        walk = f"{uuid.UUID(plan['id']).hex}.walk"
        assert [g.reference for g in cp.goal] == [f"Goal/{walk}"]
        assert cp.activity[0].detail.status == "not-started"

        g = await care_plans_client.get(f"/fhir/Goal/{walk}", headers=w.as_(w.consented))
        goal = Goal.model_validate(g.json())
        assert (goal.id, goal.lifecycleStatus) == (walk, "active")
        assert goal.target[0].dueDate.isoformat() == "2026-09-01"
        content = plan["content"]
        content["goals"].append({"id": "swim", "what": "Swim", "status": "achieved"})
        await care_plans_client.put(
            f"/care-plans/{plan['id']}",
            json={"content": content, "reason": "swim"},
            headers={**w.holder_h(), "If-Match": 'W/"1"'},
        )
        swim = f"{uuid.UUID(plan['id']).hex}.swim"
        g = await care_plans_client.get(f"/fhir/Goal/{swim}", headers=w.holder_h())
        goal = Goal.model_validate(g.json())
        assert goal.lifecycleStatus == "completed"
        assert goal.achievementStatus.coding[0].code == "achieved"
        assert (
            await care_plans_client.get(f"/fhir/Goal/{swim[:-1]}x", headers=w.holder_h())
        ).status_code == 404
        outsider = await care_plans_client.get(f"/fhir/Goal/{swim}", headers=w.as_(w.outsider))
        assert outsider.status_code == 404  # no relationship: as if there were no plan
        assert outsider.json()["resourceType"] == "OperationOutcome"

        a = (
            await care_plans_client.post(
                f"/care-plans/{plan['id']}/assessments",
                json={"instrument": "PHQ-9", "answers": phq9(7, 1)},
                headers=w.holder_h(),
            )
        ).json()
        qr = await care_plans_client.get(
            f"/fhir/QuestionnaireResponse/{a['id']}", headers=w.holder_h()
        )
        resource = QuestionnaireResponse.model_validate(qr.json())
        assert resource.status == "completed"
        assert resource.questionnaire.endswith("/Questionnaire/PHQ-9")
        assert [i.answer[0].valueCoding.code for i in resource.item] == [
            str(v) for v in phq9(7, 1).values()
        ]


class TestEventsOnKafka:
    async def test_the_relay_publishes_plan_and_risk_events_keyed_by_the_person(
        self, care_plans_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            json={"instrument": "PHQ-9", "answers": phq9(4, 2)},
            headers=w.holder_h(),
        )
        relay = OutboxRelay(settings=settings, schema="care_plans")
        await relay.start()
        try:
            while await relay.publish_batch():
                pass
        finally:
            await relay.stop()

        def mine(records: list[Any]) -> list[dict[str, Any]]:
            return [json.loads(r.value) for r in records if r.key == plan["patient_id"].encode()]

        records = await read_topic(
            settings, settings.topic(CARE_PLANS), until=lambda rs: len(mine(rs)) >= 4
        )
        events = mine(records)
        assert [e["type"] for e in events] == [
            "uk.waymark.care-plan.created",
            "uk.waymark.care-plan.consent.changed",
            "uk.waymark.care-plan.assessment.recorded",
            "uk.waymark.care-plan.risk.flagged",
        ]
        assert all(e["subject"] == plan["patient_id"] for e in events)
        assert events[3]["data"]["reason"] == "phq9_item9"
        assert events[3]["data"]["severity"] == "urgent"
        assert "answers" not in json.dumps(events) and "item" not in events[2]["data"]


class TestReferralTimeline:
    async def test_referral_events_become_the_plans_timeline_once_each(
        self,
        care_plans_client: httpx.AsyncClient,
        settings: Settings,
        care_plans_sessions: async_sessionmaker,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        rid = str(uuid.uuid4())
        facts = dict(
            referral_id=rid,
            from_org=w.holder,
            to_org=w.consented,
            to_service_id="svc-pain-mgmt",
            service_category="pain_management_programme",
            priority="routine",
        )
        evs = [
            make_event(ReferralSubmitted(**facts, state="submitted"), subject=plan["patient_id"]),
            make_event(
                ReferralAccepted(**facts, state="accepted", previous_state="submitted"),
                subject=plan["patient_id"],
            ),
            make_event(
                ReferralBooked(**facts, state="booked", previous_state="accepted"),
                subject=plan["patient_id"],
            ),
        ]
        producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
        await producer.start()
        try:
            # the second is delivered twice: the inbox makes the redelivery a no-op
            for e in [evs[0], evs[1], evs[1], evs[2]]:
                await producer.send_and_wait(settings.topic(REFERRALS), **structured(e))
        finally:
            await producer.stop()

        consumer = build_consumer(
            settings, care_plans_sessions, group_id=f"care-plans-test-{uuid.uuid4().hex[:8]}"
        )
        stop = asyncio.Event()
        await consumer.start()
        task = asyncio.create_task(consumer.run(stop))

        async def timeline() -> list[Any]:
            rows = await query(
                care_plans_sessions, "SELECT * FROM timeline_entry WHERE referral_id = :r", r=rid
            )
            return rows if len(rows) >= 3 else []

        try:
            await eventually(timeline, timeout=60)
        finally:
            stop.set()
            await task
            await consumer.stop()
        r = await care_plans_client.get(
            f"/care-plans/{plan['id']}/timeline", headers=w.as_(w.consented)
        )
        # the holder's own first referral (its care relationship) came before these
        assert [
            (t["event_type"], t["state"], t["previous_state"])
            for t in r.json()
            if t["referral_id"] == rid
        ] == [
            ("submitted", "submitted", None),
            ("accepted", "accepted", "submitted"),
            ("booked", "booked", "accepted"),
        ]
        denied = await care_plans_client.get(
            f"/care-plans/{plan['id']}/timeline", headers=w.as_(w.outsider)
        )
        assert denied.status_code == 404
