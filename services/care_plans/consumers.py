"""The care plans service's Kafka consumer: referral events become steps of the person's
journey on their plan's timeline (`python -m services.care_plans.consumers`)."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans.handlers import apply_referral_event
from shared.consumer import IdempotentConsumer, PermanentError
from shared.db import make_engine, make_sessionmaker
from shared.events.envelope import CloudEvent
from shared.events.referrals import ReferralEventData
from shared.events.registry import REGISTRY, load_all
from shared.outbox import install_stop_signals
from shared.settings import Settings, get_settings
from shared.telemetry import setup_telemetry
from shared.topics import REFERRALS

logger = logging.getLogger(__name__)
CONSUMER_NAME = "care-plans-referrals"


class ReferralEvents:
    async def handle(self, session: AsyncSession | None, event: CloudEvent,
                     _record: ConsumerRecord) -> None:
        assert session is not None
        data = REGISTRY.parse(event)
        if not isinstance(data, ReferralEventData):
            raise PermanentError(f"{event.type} is not a referral event")
        await apply_referral_event(session=session, event=event, data=data)


def build_consumer(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                   **kw: object) -> IdempotentConsumer:
    load_all()
    return IdempotentConsumer(name=settings.topic(CONSUMER_NAME),
                              topics=[settings.topic(REFERRALS)],
                              handler=ReferralEvents().handle, settings=settings,
                              sessions=sessions, **kw)  # type: ignore[arg-type]


async def run(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    setup_telemetry("care_plans-consumer", settings)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings, "care_plans", pool_size=3)
    consumer = build_consumer(settings, make_sessionmaker(engine),
                              heartbeat=settings.run_dir / "care-plans-consumer.alive")
    stop = asyncio.Event()
    install_stop_signals(stop)
    await consumer.start()
    logger.info("care plans consuming %s", settings.topic(REFERRALS))
    try:
        await consumer.run(stop)
    finally:
        await consumer.stop()
        await engine.dispose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run())


if __name__ == "__main__":
    main()
