"""A coordinator's actions through the whole stack `waymark up` starts (real PostgreSQL,
Kafka, Temporal): the inbox applies the action at once and publishes it; the patient's
PatientJourney applies it and publishes its own alert event (the echo, a higher `seq`); the
notifications consumer reconciles the inbox row. The echo confirms what the coordinator did:
it neither moves the ETag the coordinator holds nor adds a second history row."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.events.care_plans import AssessmentRecorded
from shared.events.envelope import make_event
from shared.kafka_security import client_options
from shared.outbox import event_bytes
from shared.settings import Settings
from shared.topics import CARE_PLANS
from tests.helpers import eventually
from tests.notifications.alert_support import coordinator, rows


async def _phq9_item9(s: Settings, patient_id: str) -> None:
    """A PHQ-9 with item 9 above 0, as the care plans service publishes it."""
    event = make_event(
        AssessmentRecorded(
            plan_id=f"plan-{uuid.uuid4().hex[:8]}",
            assessment_id=f"phq9-{uuid.uuid4().hex[:6]}",
            instrument="PHQ-9",
            total=8,
            band="mild",
            safety_flag=True,
        ),
        subject=patient_id,
    )
    producer = AIOKafkaProducer(**client_options(s), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            s.topic(CARE_PLANS),
            value=event_bytes(event.model_dump(mode="json")),
            key=patient_id.encode(),
        )
    finally:
        await producer.stop()


async def _inbox_row(sessions: async_sessionmaker, patient_id: str, *, min_seq: int = 1) -> Any:
    async def found() -> Any:
        got = await rows(
            sessions,
            "SELECT alert_id, status, seq, version FROM alert "
            "WHERE patient_id = :p AND seq >= :seq",
            p=patient_id,
            seq=min_seq,
        )
        return got[0] if got else None

    return await eventually(found, timeout=60)


class TestAcknowledgeThenResolve:
    async def test_the_journeys_echo_moves_neither_the_etag_nor_the_history(
        self, running_apps: Settings, notifications_sessions: async_sessionmaker
    ) -> None:
        s = running_apps
        patient_id = f"pt_roundtrip_{uuid.uuid4().hex[:10]}"
        me = f"coord-rt-{uuid.uuid4().hex[:6]}"
        h = coordinator(s, user=me)
        await _phq9_item9(s, patient_id)
        raised = await _inbox_row(notifications_sessions, patient_id)
        alert_id = raised.alert_id
        assert (raised.status, raised.seq, raised.version) == ("open", 1, 1)

        async with httpx.AsyncClient(base_url=s.api_url("notifications"), timeout=10) as http:
            r = await http.post(
                f"/alerts/{alert_id}/acknowledge", headers={**h, "If-Match": 'W/"1"'}
            )
            assert r.status_code == 200, r.text
            assert r.headers["etag"] == 'W/"2"'

            # the journey applies the acknowledgement and publishes it back (seq 2)
            echoed = await _inbox_row(notifications_sessions, patient_id, min_seq=2)
            assert (echoed.status, echoed.version) == ("acknowledged", 2)
            r = await http.get(f"/alerts/{alert_id}", headers=h)
            assert r.status_code == 200, r.text
            assert r.headers["etag"] == 'W/"2"'
            assert [(x["change"], x["actor"]) for x in r.json()["history"]] == [
                ("raised", "journey"),
                ("acknowledged", me),
            ]

            r = await http.post(
                f"/alerts/{alert_id}/resolve",
                json={"resolution": "contacted-person"},
                headers={**h, "If-Match": 'W/"2"'},
            )
            assert r.status_code == 200, r.text
            assert r.headers["etag"] == 'W/"3"'

            done = await _inbox_row(notifications_sessions, patient_id, min_seq=3)
            assert (done.status, done.version) == ("resolved", 3)
            r = await http.get(f"/alerts/{alert_id}", headers=h)
            assert r.headers["etag"] == 'W/"3"'
            history = r.json()["history"]
            assert [(x["change"], x["status"], x["actor"]) for x in history] == [
                ("raised", "open", "journey"),
                ("acknowledged", "acknowledged", me),
                ("resolved", "resolved", me),
            ]
