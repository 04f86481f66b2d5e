"""The notifications service's Kafka consumer: every topic's events become messages, partner
webhook deliveries and the coordinators' alert inbox (`python -m services.notifications.consumers`).
"""

from __future__ import annotations

import logging

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.effects import apply_event
from shared.consumer import IdempotentConsumer, consumer_main
from shared.events.envelope import CloudEvent
from shared.events.registry import REGISTRY, load_all
from shared.settings import Settings
from shared.topics import CARE_PLANS, DIRECTORY, ENCOUNTERS, JOURNEYS, REFERRALS

logger = logging.getLogger(__name__)
CONSUMER_NAME = "notifications"
#: every topic but its own (its own alert actions are for the journeys)
TOPICS = (REFERRALS, DIRECTORY, CARE_PLANS, JOURNEYS, ENCOUNTERS)


class AllEvents:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def handle(
        self, session: AsyncSession | None, event: CloudEvent, _record: ConsumerRecord
    ) -> None:
        assert session is not None
        await apply_event(
            session=session, event=event, data=REGISTRY.parse(event), settings=self.settings
        )


def build_consumer(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], **kw: object
) -> IdempotentConsumer:
    load_all()
    return IdempotentConsumer(
        name=settings.topic(CONSUMER_NAME),
        topics=[settings.topic(t) for t in TOPICS],
        handler=AllEvents(settings).handle,
        settings=settings,
        sessions=sessions,
        **kw,
    )  # type: ignore[arg-type]


def main() -> None:
    consumer_main("notifications-consumer", "notifications", build_consumer)


if __name__ == "__main__":
    main()
