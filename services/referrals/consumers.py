"""The referrals service's Kafka consumer: directory events keep its replica of the directory
and flag open referrals to a withdrawn service (`waymark run referrals-consumer`)."""

from __future__ import annotations

import logging

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.referrals.handlers import apply_directory_event
from shared.consumer import IdempotentConsumer, PermanentError, consumer_main
from shared.events.directory import DirectoryServiceEventData
from shared.events.envelope import CloudEvent
from shared.events.registry import REGISTRY, load_all
from shared.settings import Settings
from shared.topics import DIRECTORY

logger = logging.getLogger(__name__)
CONSUMER_NAME = "referrals-directory"


class DirectoryEvents:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def handle(
        self, session: AsyncSession | None, event: CloudEvent, _record: ConsumerRecord
    ) -> None:
        assert session is not None
        data = REGISTRY.parse(event)
        if not isinstance(data, DirectoryServiceEventData):
            raise PermanentError(f"{event.type} is not a directory service event")
        flagged = await apply_directory_event(
            session=session, event=event, data=data, settings=self.settings
        )
        if flagged:
            logger.info("service %s withdrawn: %d open referrals flagged", data.service_id, flagged)


def build_consumer(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], **kw: object
) -> IdempotentConsumer:
    load_all()
    return IdempotentConsumer(
        name=settings.topic(CONSUMER_NAME),
        topics=[settings.topic(DIRECTORY)],
        handler=DirectoryEvents(settings).handle,
        settings=settings,
        sessions=sessions,
        **kw,
    )  # type: ignore[arg-type]


def main() -> None:
    consumer_main("referrals-consumer", "referrals", build_consumer)


if __name__ == "__main__":
    main()
