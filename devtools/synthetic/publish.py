"""Synthetic journeys onto the referrals topic, as the referrals service would publish them
(from the synthetic source, so nobody is messaged about a made-up referral)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from aiokafka import AIOKafkaProducer

from devtools.synthetic.builder import SyntheticJourney
from shared.events.binding import event_bytes, kafka_headers
from shared.events.envelope import CloudEvent, make_event
from shared.events.referrals import EVENT_FOR_STATE, SYNTHETIC_SOURCE
from shared.kafka_security import client_options
from shared.settings import Settings
from workflows.journeys.state import JourneyEvent


def to_cloud_event(patient_id: str, e: JourneyEvent) -> CloudEvent:
    """The referral event the referrals service would have published, from the synthetic
    source (so nobody is messaged about a made-up referral)."""
    data = EVENT_FOR_STATE[e.state](
        referral_id=e.referral_id,
        from_org=e.from_org,
        to_org=e.to_org,
        to_service_id=e.to_service_id,
        service_category=e.service_category,
        reason_codes=e.reason_codes,
        priority=e.priority,  # type: ignore[arg-type]
        state=e.state,
        previous_state=e.previous_state,
        transition_reason=e.transition_reason,
        appointment_at=datetime.fromisoformat(e.appointment_at) if e.appointment_at else None,
    )
    event = make_event(
        data, subject=patient_id, event_id=e.event_id, time=datetime.fromisoformat(e.occurred_at)
    )
    return event.model_copy(update={"source": SYNTHETIC_SOURCE})


async def publish(journeys: Sequence[SyntheticJourney], *, settings: Settings, topic: str) -> int:
    """Publish every journey's events, in order, keyed by the patient's pseudonymous id (one
    patient's events stay in order on one partition); the number published. An event's id is
    its content's (builder.content_id), so publishing the same journeys again changes nothing
    downstream (every consumer skips an event id it has seen), and the same seed laid out
    from another `now` is new events under new ids."""
    producer = AIOKafkaProducer(
        **client_options(settings), acks="all", enable_idempotence=True, linger_ms=5
    )
    sends = []
    await producer.start()
    try:
        for j in journeys:
            for e in j.events:
                event = to_cloud_event(j.patient_id, e)
                sends.append(
                    await producer.send(
                        topic,
                        value=event_bytes(event.model_dump(mode="json")),
                        key=j.patient_id.encode(),
                        headers=kafka_headers(),  # structured mode, as the relay writes
                    )
                )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return len(sends)
