"""The care plans service's Kafka consumer: referral events become steps of the person's
journey on their plan's timeline (`python -m services.care_plans.consumers`)."""

from __future__ import annotations

import logging

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans.handlers.timeline import apply_referral_event
from shared.consumer import IdempotentConsumer, PermanentError, consumer_main
from shared.events.envelope import CloudEvent
from shared.events.referrals import ReferralEventData
from shared.events.registry import REGISTRY, load_all
from shared.settings import Settings
from shared.topics import REFERRALS

logger = logging.getLogger(__name__)
CONSUMER_NAME = "care-plans-referrals"


class ReferralEvents:
    async def handle(
        self, session: AsyncSession | None, event: CloudEvent, _record: ConsumerRecord
    ) -> None:
        assert session is not None
        data = REGISTRY.parse(event)
        if not isinstance(data, ReferralEventData):
            raise PermanentError(f"{event.type} is not a referral event")
        await apply_referral_event(session=session, event=event, data=data)


def build_consumer(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], **kw: object
) -> IdempotentConsumer:
    load_all()
    return IdempotentConsumer(
        name=settings.topic(CONSUMER_NAME),
        topics=[settings.topic(REFERRALS)],
        handler=ReferralEvents().handle,
        settings=settings,
        sessions=sessions,
        **kw,
    )  # type: ignore[arg-type]


def main() -> None:
    consumer_main("care-plans-consumer", "care_plans", build_consumer)


if __name__ == "__main__":
    main()
