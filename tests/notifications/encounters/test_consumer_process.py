"""The running notifications consumer (the stack's own process, over the real Kafka broker)
reads `waymark.encounters.v1`: a contact reaches the contact index at its highest revision,
the same event delivered twice and a late lower revision change nothing, and an event that
breaks the schema goes to the dead-letter topic with the reason."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from services.notifications.consumers import CONSUMER_NAME
from shared.events.binding import kafka_headers
from shared.kafka_security import client_options
from shared.topics import ENCOUNTERS, dlq
from tests.cloudevents_support import MALFORMED_ON_PURPOSE
from tests.helpers import end_offsets, eventually, read_topic
from tests.notifications.encounters.support import encounter_event, new_patient
from tests.notifications.test_consumer import rows


async def produce(s: Any, messages: list[tuple[str, bytes]]) -> None:
    """(key, value) messages on the encounters topic with the binding's headers; some are
    malformed on purpose (marked so), for the DLQ."""
    headers = kafka_headers([(MALFORMED_ON_PURPOSE, b"1")])
    producer = AIOKafkaProducer(**client_options(s), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(s.topic(ENCOUNTERS), key=key.encode(), value=value, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


class TestTheRunningConsumer:
    async def test_contacts_arrive_once_at_their_highest_revision_and_bad_ones_dead_letter(
        self, running_apps, notifications_sessions
    ):
        s = running_apps
        patient, eid = new_patient(), str(uuid.uuid4())
        at = datetime(2026, 2, 3, 10, 30, tzinfo=UTC)
        arrived = encounter_event(
            patient=patient, encounter_id=eid, status="arrived", started_at=at
        )
        finished = encounter_event(
            patient=patient, encounter_id=eid, revision=3, status="finished", started_at=at
        )
        late = encounter_event(
            patient=patient, encounter_id=eid, revision=2, status="in_progress", started_at=at
        )
        broken = json.loads(encounter_event(patient=patient, started_at=at).model_dump_json())
        broken["data"]["revision"] = 0  # revisions start at 1
        broken_bytes = json.dumps(broken).encode()
        dlq_since = await end_offsets(s, s.topic(dlq(ENCOUNTERS)))
        # one key (the person), one partition: they are read in this order
        await produce(
            s,
            [
                (patient, arrived.model_dump_json().encode()),
                (patient, finished.model_dump_json().encode()),
                (patient, late.model_dump_json().encode()),
                (patient, arrived.model_dump_json().encode()),  # delivered again
                (patient, broken_bytes),
            ],
        )
        ids = [arrived.id, finished.id, late.id]

        async def inbox() -> list[Any]:
            found = await rows(
                notifications_sessions,
                "SELECT event_id FROM inbox WHERE consumer = :c AND event_id = ANY(:ids)",
                c=s.topic(CONSUMER_NAME),
                ids=ids,
            )
            return found if len(found) >= 3 else []

        got = await eventually(inbox, timeout=120)
        assert sorted(r.event_id for r in got) == sorted(ids)  # each once
        [row] = await rows(
            notifications_sessions,
            "SELECT revision, status, event_id, patient_id FROM contact_index "
            "WHERE encounter_id = :e",
            e=eid,
        )
        assert (row.revision, row.status, row.event_id, row.patient_id) == (
            3,
            "finished",
            finished.id,
            patient,
        )

        def mine(records: list[Any]) -> list[Any]:
            return [
                r
                for r in records
                if r.value == broken_bytes
                and dict(r.headers).get("dlq.consumer") == s.topic(CONSUMER_NAME).encode()
            ]

        dead = mine(
            await read_topic(
                s,
                s.topic(dlq(ENCOUNTERS)),
                from_offsets=dlq_since,
                until=lambda rs: len(mine(rs)) >= 1,
                timeout=120,
            )
        )
        reason = dict(dead[0].headers)["dlq.reason"]
        assert b"revision" in reason
        assert dict(dead[0].headers)["dlq.original.topic"] == s.topic(ENCOUNTERS).encode()
        assert (
            await rows(
                notifications_sessions,
                "SELECT 1 FROM contact_index WHERE encounter_id = :e",
                e=broken["data"]["encounter_id"],
            )
            == []
        )
