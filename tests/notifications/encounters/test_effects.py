"""The contact index (services/notifications/encounters/effects.py) on the real database,
through the consumer's own handler (services.notifications.effects.apply_event) and through
the consumer's inbox: each encounter at its highest revision, a redelivered event a no-op, a
lower revision after a higher one changing nothing, cancelled and entered-in-error contacts
kept as such; and one person's contacts read back (encounters/repository.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.structs import ConsumerRecord

from services.notifications.consumers import TOPICS, build_consumer
from services.notifications.encounters.repository import person_contacts
from services.notifications.models import ContactIndex
from shared.topics import ENCOUNTERS
from tests.notifications.encounters.support import encounter_event, new_patient
from tests.notifications.test_consumer import apply, rows

FEB_3 = datetime(2026, 2, 3, 10, 30, tzinfo=UTC)


async def indexed(sessions: Any, encounter_id: str) -> list[Any]:
    return await rows(
        sessions,
        "SELECT encounter_id, revision, event_id, patient_id, contact_kind, planned, status, "
        "started_at, ended_at, source_org, source_system, channel, chief_complaint, "
        "diagnosis_codes, attendance_category, discharge_destination "
        "FROM contact_index WHERE encounter_id = :e",
        e=encounter_id,
    )


def record(event: Any, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(
        topic=f"x.{ENCOUNTERS}",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=event.subject.encode(),
        value=event.model_dump_json().encode(),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=[],
    )


class TestTheContactIndex:
    def test_the_consumer_reads_the_encounters_topic(self):
        assert ENCOUNTERS in TOPICS

    def test_the_table_is_the_model(self):
        assert ContactIndex.__tablename__ == "contact_index"

    async def test_an_encounter_is_indexed_with_its_codes(self, infra, notifications_sessions):
        patient = new_patient()
        event = encounter_event(
            patient=patient,
            started_at=FEB_3,
            ended_at=FEB_3 + timedelta(hours=4),
            chief_complaint="279039007",  # low back pain
            diagnosis_codes=["279039007"],
            attendance_category="1",
            discharge_destination="306689006",
        )
        await apply(notifications_sessions, infra, event)
        [row] = await indexed(notifications_sessions, event.data["encounter_id"])
        assert (row.revision, row.event_id, row.patient_id) == (1, event.id, patient)
        assert (row.contact_kind, row.planned, row.status) == ("ae_attendance", False, "finished")
        assert row.started_at == FEB_3 and row.ended_at == FEB_3 + timedelta(hours=4)
        assert (row.source_org, row.source_system, row.channel) == ("RXX01", "pas-test", "hl7v2")
        assert (row.chief_complaint, row.diagnosis_codes) == ("279039007", ["279039007"])
        assert (row.attendance_category, row.discharge_destination) == ("1", "306689006")

    async def test_the_same_event_applied_twice_leaves_one_row_as_it_was(
        self, infra, notifications_sessions
    ):
        event = encounter_event(patient=new_patient(), started_at=FEB_3)
        await apply(notifications_sessions, infra, event)
        before = await indexed(notifications_sessions, event.data["encounter_id"])
        await apply(notifications_sessions, infra, event)
        after = await indexed(notifications_sessions, event.data["encounter_id"])
        assert len(after) == 1 and after == before

    async def test_a_higher_revision_replaces_the_contact(self, infra, notifications_sessions):
        patient, eid = new_patient(), str(uuid.uuid4())
        arrived = encounter_event(patient=patient, encounter_id=eid, status="arrived")
        finished = encounter_event(
            patient=patient,
            encounter_id=eid,
            revision=2,
            status="finished",
            discharge_destination="306689006",
        )
        for e in (arrived, finished):
            await apply(notifications_sessions, infra, e)
        [row] = await indexed(notifications_sessions, eid)
        assert (row.revision, row.status, row.event_id) == (2, "finished", finished.id)
        assert row.discharge_destination == "306689006"

    async def test_a_lower_revision_after_a_higher_one_changes_nothing(
        self, infra, notifications_sessions
    ):
        patient, eid = new_patient(), str(uuid.uuid4())
        third = encounter_event(patient=patient, encounter_id=eid, revision=3, status="finished")
        await apply(notifications_sessions, infra, third)
        before = await indexed(notifications_sessions, eid)
        for rev, status in ((1, "arrived"), (2, "in_progress"), (3, "cancelled")):
            # a late lower revision, and another event claiming the same revision
            late = encounter_event(
                patient=patient, encounter_id=eid, revision=rev, status=status, planned=True
            )
            await apply(notifications_sessions, infra, late)
        assert await indexed(notifications_sessions, eid) == before
        assert before[0].revision == 3 and before[0].status == "finished"

    async def test_cancelled_and_entered_in_error_are_kept_as_such(
        self, infra, notifications_sessions
    ):
        patient = new_patient()
        for status in ("cancelled", "entered_in_error"):
            eid = str(uuid.uuid4())
            await apply(
                notifications_sessions,
                infra,
                encounter_event(patient=patient, encounter_id=eid, status="arrived"),
            )
            await apply(
                notifications_sessions,
                infra,
                encounter_event(patient=patient, encounter_id=eid, revision=2, status=status),
            )
            [row] = await indexed(notifications_sessions, eid)
            assert (row.revision, row.status) == (2, status)

    async def test_redelivery_through_the_inbox_is_a_no_op(self, infra, notifications_sessions):
        """The consumer's own path: the inbox row and the effect in one transaction, so the
        same event delivered again (a rebalance, a restart before the offset commit) is
        skipped before the effect runs."""
        consumer = build_consumer(infra, notifications_sessions)
        try:
            patient, eid = new_patient(), str(uuid.uuid4())
            first = encounter_event(patient=patient, encounter_id=eid, status="arrived")
            async with notifications_sessions() as session, session.begin():
                assert await consumer._apply_in(session, first, record(first)) is True
            # meanwhile the row moves on (as a later revision would move it); the redelivered
            # first event must not touch it
            second = encounter_event(patient=patient, encounter_id=eid, revision=2)
            await apply(notifications_sessions, infra, second)
            async with notifications_sessions() as session, session.begin():
                assert await consumer._apply_in(session, first, record(first, 1)) is False
            [row] = await indexed(notifications_sessions, eid)
            assert (row.revision, row.event_id) == (2, second.id)
            inbox = await rows(
                notifications_sessions,
                "SELECT count(*) AS n FROM inbox WHERE event_id = :e AND consumer = :c",
                e=first.id,
                c=consumer.name,
            )
            assert inbox[0].n == 1
        finally:
            await consumer.dlq_producer.stop()


class TestOnePersonsContacts:
    async def test_oldest_first_every_status_codes_only(self, infra, notifications_sessions):
        patient, other = new_patient(), new_patient()
        events = [
            encounter_event(patient=patient, started_at=FEB_3 + timedelta(days=d), status=s)
            for d, s in ((5, "finished"), (0, "cancelled"), (2, "booked"))
        ]
        events.append(encounter_event(patient=other, started_at=FEB_3))
        for e in events:
            await apply(notifications_sessions, infra, e)
        async with notifications_sessions() as session:
            got = await person_contacts(session, patient)
        assert [(c.started_at, c.status) for c in got] == [
            (FEB_3, "cancelled"),
            (FEB_3 + timedelta(days=2), "booked"),
            (FEB_3 + timedelta(days=5), "finished"),
        ]
        assert {c.encounter_id for c in got} == {e.data["encounter_id"] for e in events[:3]}

    async def test_the_most_recent_ones_when_there_are_more_than_the_limit(
        self, infra, notifications_sessions
    ):
        patient = new_patient()
        for d in range(5):
            await apply(
                notifications_sessions,
                infra,
                encounter_event(patient=patient, started_at=FEB_3 + timedelta(days=d)),
            )
        async with notifications_sessions() as session:
            got = await person_contacts(session, patient, limit=3)
        assert [c.started_at for c in got] == [FEB_3 + timedelta(days=d) for d in (2, 3, 4)]
