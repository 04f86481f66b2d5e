"""Every Kafka topic Waymark uses, defined in one place and created by `waymark up`
(and by `waymark topics` in Compose/Kubernetes) through the admin API."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from shared.settings import Settings

logger = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    cleanup_policy: str = "delete"

    def config(self, replication: int) -> dict[str, str]:
        # with one broker min.insync.replicas must be 1; in production (3 brokers) it is 2,
        # so an acks=all write survives the loss of one broker
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            "min.insync.replicas": str(min(2, replication)),
        }


REFERRALS = "waymark.referrals.v1"
DIRECTORY = "waymark.directory.v1"
CARE_PLANS = "waymark.care-plans.v1"
NOTIFICATIONS = "waymark.notifications.v1"
JOURNEYS = "waymark.journeys.v1"
ENCOUNTERS = "waymark.encounters.v1"

_EVENT_TOPICS = [REFERRALS, DIRECTORY, CARE_PLANS, NOTIFICATIONS, JOURNEYS, ENCOUNTERS]


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics() -> list[TopicSpec]:
    specs = []
    for name in _EVENT_TOPICS:
        # 6 partitions: events are keyed by patient, so order holds per patient while up to
        # six consumers share the load; 7 days' retention lets a consumer replay a week
        specs.append(TopicSpec(name, partitions=6, retention_ms=7 * DAY_MS))
        # dead letters are kept longer: a person has to look at them
        specs.append(TopicSpec(dlq(name), partitions=3, retention_ms=30 * DAY_MS))
    return specs


async def ensure_topics(settings: Settings, replication: int = 1, timeout: float = 60) -> list[str]:
    """Create every missing topic; return the names created."""
    # imported here: the topic names above are pure data (shared/kafka_principals.py uses them)
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from shared.kafka_security import client_options

    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in all_topics() if settings.topic(s.name) not in existing]
        if wanted:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            settings.topic(s.name),
                            s.partitions,
                            replication,
                            topic_configs=s.config(replication),
                        )
                        for s in wanted
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # a concurrent `up` created it first
        # wait until the broker reports them (metadata propagates asynchronously)
        deadline = asyncio.get_running_loop().time() + timeout
        names = {settings.topic(s.name) for s in all_topics()}
        while not names <= set(await admin.list_topics()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"topics not visible after {timeout}s")
            await asyncio.sleep(0.2)
        return [settings.topic(s.name) for s in wanted]
    finally:
        await admin.close()
