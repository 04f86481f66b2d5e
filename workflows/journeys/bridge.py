"""The Kafka -> Temporal bridge: every referral event, every care-plan assessment, every
contact with care the EHRs report (encounters) and every coordinator's action on an alert
signals (signal-with-start) the patient's PatientJourney.

The bridge keeps no inbox of its own: its effect is a Temporal signal, which cannot share a
database transaction, so it is at-least-once and the workflow ignores an event id it has
already applied. Offsets are committed only after Temporal accepted the signal.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from aiokafka import ConsumerRecord
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from shared.auth import service_token
from shared.consumer import IdempotentConsumer, PermanentError
from shared.errors import WaymarkError
from shared.events.care_plans import AssessmentRecorded, CarePlanCreated, CarePlanUpdated
from shared.events.encounters import EncounterRecorded
from shared.events.envelope import CloudEvent
from shared.events.notifications import AlertActionTaken
from shared.events.referrals import ReferralEventData
from shared.events.registry import REGISTRY, load_all
from shared.outbox import install_stop_signals
from shared.settings import Settings, get_settings
from shared.telemetry import setup_telemetry
from shared.topics import CARE_PLANS, ENCOUNTERS, NOTIFICATIONS, REFERRALS
from workflows.journeys import TASK_QUEUE, workflow_id
from workflows.journeys.state import (
    AlertAction,
    AssessmentEvent,
    ContactEvent,
    JourneyEvent,
    PlanActivity,
)
from workflows.journeys.worker import connect
from workflows.journeys.workflows import JourneyInput, PatientJourney

logger = logging.getLogger(__name__)
CONSUMER_NAME = "journeys-bridge"


def to_journey_event(event: CloudEvent) -> JourneyEvent:
    data = REGISTRY.parse(event)
    if not isinstance(data, ReferralEventData):
        raise PermanentError(f"{event.type} is not a referral event")
    return JourneyEvent(
        event_id=event.id,
        event_type=event.type,
        occurred_at=event.time.isoformat(),
        referral_id=data.referral_id,
        state=data.state,
        from_org=data.from_org,
        to_org=data.to_org,
        to_service_id=data.to_service_id,
        service_category=data.service_category,
        priority=data.priority,
        reason_codes=list(data.reason_codes),
        referred_from=data.referred_from,
        previous_state=data.previous_state,
        transition_reason=data.transition_reason,
        appointment_at=data.appointment_at.isoformat() if data.appointment_at else None,
    )


def to_action(event: CloudEvent, data: AlertActionTaken) -> AlertAction:
    return AlertAction(
        event_id=event.id,
        alert_id=data.alert_id,
        action=data.action,
        actor=data.actor,
        occurred_at=event.time.isoformat(),
        assignee=data.assignee,
        reason=data.resolution,
        until=data.snooze_until.isoformat() if data.snooze_until else None,
    )


def to_assessment(event: CloudEvent, data: AssessmentRecorded) -> AssessmentEvent:
    return AssessmentEvent(
        event_id=event.id,
        occurred_at=event.time.isoformat(),
        assessment_id=data.assessment_id,
        instrument=data.instrument,
        band=data.band,
        total=data.total,
        safety_flag=data.safety_flag,
        registered_practice=data.registered_practice,
        holder_org=data.holder_org,
    )


def to_contact(event: CloudEvent, data: EncounterRecorded) -> ContactEvent:
    """An encounter event as the journey's `contact` signal: codes and times only."""
    return ContactEvent(
        event_id=event.id,
        occurred_at=event.time.isoformat(),
        encounter_id=data.encounter_id,
        revision=data.revision,
        contact_kind=data.contact_kind.value,
        planned=data.planned,
        status=data.status.value,
        started_at=data.started_at.isoformat(),
        ended_at=data.ended_at.isoformat() if data.ended_at else None,
        source_org=data.source_org,
        chief_complaint=data.chief_complaint,
        diagnosis_codes=list(data.diagnosis_codes),
        attendance_category=data.attendance_category,
        discharge_destination=data.discharge_destination,
    )


class ServiceNames:
    """Services' names from the directory (public directory data), for the journey's
    explanations: "the Specialist Pain Clinic", not its category. Cached for an hour; when the
    directory can't answer, None (the journey names the category) and asked again a minute
    later. Never holds up an event."""

    TTL, RETRY, TIMEOUT = 3600.0, 60.0, 3.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache: dict[str, tuple[str | None, float]] = {}
        self.http: httpx.AsyncClient | None = None
        # one lookup per service at a time: the bridge handles up to 32 patients of a partition
        # at once, and a burst of referrals to one service used to send every one of them to
        # the directory (and to the identity provider for a token) when the cache had no name
        # (a py-spy profile of a burst: a tenth of the bridge's samples, mostly building TLS
        # contexts for those requests)
        self.lookups: dict[str, asyncio.Future[str | None]] = {}

    async def name(self, service_id: str) -> str | None:
        hit = self.cache.get(service_id)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        lookup = self.lookups.get(service_id)
        if lookup is None:
            lookup = self.lookups[service_id] = asyncio.ensure_future(self._lookup(service_id))
        return await asyncio.shield(lookup)

    async def _lookup(self, service_id: str) -> str | None:
        try:
            name, ttl = await self._fetch(service_id)
            self.cache[service_id] = (name, time.monotonic() + ttl)
            return name
        finally:
            del self.lookups[service_id]

    async def _fetch(self, service_id: str) -> tuple[str | None, float]:
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=self.TIMEOUT)
        try:
            bearer = await service_token(self.settings, "journeys")
            r = await self.http.get(
                f"{self.settings.api_url('directory')}/services/{service_id}",
                headers={"Authorization": f"Bearer {bearer}"},
            )
        except (httpx.HTTPError, OSError, WaymarkError, RuntimeError) as exc:
            logger.info("directory unavailable for service names (%s)", type(exc).__name__)
            return None, self.RETRY
        if r.status_code == 404:
            return None, self.TTL  # not listed (e.g. the demo's synthetic services)
        if r.status_code != 200:
            return None, self.RETRY
        name = r.json().get("name")
        return (name if isinstance(name, str) and name else None), self.TTL

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()


class Bridge:
    def __init__(self, client: Client, names: ServiceNames | None = None) -> None:
        self.client = client
        self.names = names

    async def handle(
        self, _session: AsyncSession | None, event: CloudEvent, _record: ConsumerRecord
    ) -> None:
        data = REGISTRY.parse(event)
        if isinstance(data, ReferralEventData):
            signal, arg = "referral_event", to_journey_event(event)
            if self.names is not None:
                arg.service_name = await self.names.name(data.to_service_id)
        elif isinstance(data, (CarePlanCreated, CarePlanUpdated)):
            # a change to the plan is a next step taken for the person
            signal, arg = (
                "plan_activity",
                PlanActivity(  # type: ignore[assignment]
                    event_id=event.id, occurred_at=event.time.isoformat()
                ),
            )
        elif isinstance(data, AssessmentRecorded):
            signal, arg = "assessment", to_assessment(event, data)  # type: ignore[assignment]
        elif isinstance(data, AlertActionTaken):
            signal, arg = "alert_action", to_action(event, data)  # type: ignore[assignment]
        elif isinstance(data, EncounterRecorded):
            signal, arg = "contact", to_contact(event, data)  # type: ignore[assignment]
        else:
            return  # other events (plan versions, consent, deliveries) do not move a journey
        await self.client.start_workflow(
            PatientJourney.run,
            JourneyInput(patient_id=event.subject),
            id=workflow_id(event.subject),
            task_queue=TASK_QUEUE,
            start_signal=signal,
            start_signal_args=[arg],
        )


def build_consumer(
    settings: Settings, client: Client, names: ServiceNames | None = None, **kw: object
) -> IdempotentConsumer:
    load_all()
    return IdempotentConsumer(
        name=settings.topic(CONSUMER_NAME),
        topics=[
            settings.topic(REFERRALS),
            settings.topic(CARE_PLANS),
            settings.topic(NOTIFICATIONS),
            settings.topic(ENCOUNTERS),
        ],
        handler=Bridge(client, names).handle,
        settings=settings,
        sessions=None,
        # patients are independent: signal up to 32 of a partition's patients at once
        key_concurrency=32,
        **kw,
    )  # type: ignore[arg-type]


async def run_bridge(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    setup_telemetry("journeys-bridge", settings)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    client = await connect(settings)
    names = ServiceNames(settings)
    consumer = build_consumer(
        settings, client, names, heartbeat=settings.run_dir / "journeys-bridge.alive"
    )
    stop = asyncio.Event()
    install_stop_signals(stop)
    await consumer.start()
    logger.info(
        "bridge consuming %s",
        ", ".join(settings.topic(t) for t in (REFERRALS, CARE_PLANS, NOTIFICATIONS, ENCOUNTERS)),
    )
    try:
        await consumer.run(stop)
    finally:
        await consumer.stop()
        await names.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_bridge())


if __name__ == "__main__":
    main()
