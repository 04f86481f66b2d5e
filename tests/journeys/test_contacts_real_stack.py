"""Contacts through the whole stack `waymark up` starts (real Kafka, bridge, Temporal worker,
PostgreSQL, notifications consumer): `uk.waymark.encounter.recorded` events on the encounters
topic, as the integration service publishes them, reach the patient's journey through the
bridge and become one frequent-attender alert in the journey's read model and the
coordinators' inbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from shared.db import make_engine, make_sessionmaker, unit_of_work
from shared.events.encounters import EncounterRecorded
from shared.events.envelope import CloudEvent, make_event
from shared.kafka_security import client_options
from shared.settings import Settings
from shared.temporal_client import connect as connect_temporal
from shared.topics import ENCOUNTERS
from tests.helpers import eventually, structured
from workflows.journeys import workflow_id
from workflows.journeys.rules import load_rules
from workflows.journeys.rules_contacts import FREQUENT
from workflows.journeys.workflows import PatientJourney


def attendance(
    patient: str, encounter: str, started: datetime, *, revision: int = 1, status: str = "finished"
) -> CloudEvent:
    """An A&E attendance for low back pain, as the integration service publishes it."""
    return make_event(
        EncounterRecorded(
            encounter_id=encounter,
            revision=revision,
            contact_kind="ae_attendance",
            planned=False,
            status=status,
            started_at=started,
            ended_at=started + timedelta(hours=4),
            source_org="RXX01",
            source_system="pas-test",
            channel="hl7v2",
            chief_complaint="279039007",
            attendance_category="1",
        ),
        subject=patient,
    )


async def produce(s: Settings, events: list[CloudEvent]) -> None:
    producer = AIOKafkaProducer(**client_options(s), acks="all")
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(s.topic(ENCOUNTERS), **structured(e))
    finally:
        await producer.stop()


class TestEncountersReachTheJourney:
    async def test_four_ae_attendances_for_back_pain_become_one_frequent_attender_alert(
        self, running_apps: Settings, journey_sessions
    ) -> None:
        s = running_apps
        patient = f"pt_enc_{uuid.uuid4().hex[:10]}"
        # midday UTC: the explanation counts days between UK calendar dates, and an evening
        # start put a BST date and a GMT date an hour apart across the clock change (29 days)
        start = (datetime.now(UTC) - timedelta(days=60)).replace(hour=12, minute=0)
        encounters = [str(uuid.uuid4()) for _ in range(5)]
        events = [
            attendance(patient, encounters[i], start + timedelta(days=10 * i)) for i in range(4)
        ]
        # the fifth was registered, then entered in error (HL7 v2 A11): never a contact
        events += [
            attendance(patient, encounters[4], start + timedelta(days=45), status="arrived"),
            attendance(
                patient,
                encounters[4],
                start + timedelta(days=45),
                revision=2,
                status="entered_in_error",
            ),
        ]
        await produce(s, events + events[:2])  # the first two redelivered

        client = await connect_temporal(s)
        handle = client.get_workflow_handle(workflow_id(patient))

        async def applied():  # type: ignore[no-untyped-def]
            try:
                view = await handle.query(PatientJourney.journey)
            except Exception:  # noqa: BLE001 - not started yet
                return None
            # the redeliveries follow the six on the patient's partition: wait for them too
            return view if view.events_applied + view.duplicates_ignored >= 8 else None

        view = await eventually(applied, timeout=60, interval=0.5)
        assert (view.events_applied, view.duplicates_ignored) == (len(events), 2)

        async def judged():  # type: ignore[no-untyped-def]
            view = await handle.query(PatientJourney.journey)
            return view.alerts or None

        found = await eventually(judged, timeout=load_rules().settle_seconds + 60, interval=1.0)
        assert [a.rule for a in found] == [FREQUENT]
        assert [e.encounter_id for e in found[0].evidence] == encounters[:4]
        assert found[0].explanation.startswith("4 unplanned contacts in 30 days")

        async def read_models():  # type: ignore[no-untyped-def]
            async with unit_of_work(journey_sessions) as session:
                journey = (
                    await session.exec(
                        text(
                            "SELECT rule, status FROM journey_alert WHERE patient_id = :p"
                        ).bindparams(p=patient)
                    )
                ).all()
            engine = make_engine(s, "notifications")
            try:
                async with unit_of_work(make_sessionmaker(engine)) as session:
                    inbox = (
                        await session.exec(
                            text("SELECT rule, status FROM alert WHERE patient_id = :p").bindparams(
                                p=patient
                            )
                        )
                    ).all()
            finally:
                await engine.dispose()
            got = ([tuple(r) for r in journey], [tuple(r) for r in inbox])
            return got if got[0] and got[1] else None

        journey, inbox = await eventually(read_models, timeout=60, interval=1.0)
        assert journey == [(FREQUENT, "open")]
        assert inbox == [(FREQUENT, "open")]
