"""After the session: every message on every topic of the test instance is a CloudEvent that
a consumer outside Waymark reads with the official SDK (`cloudevents` 2.2.0, Kafka Protocol
Binding 1.0, structured mode), and a CloudEvents source + id pair is one event.

It reads what this session wrote (records from the moment the session collected this module,
so older runs' messages on a long-lived instance are not its business), the DLQs included:
a dead letter is its original bytes and headers. Messages a test writes malformed on purpose
(poison for the DLQ tests) carry `waymark-test-malformed` and are counted apart. One more
patient goes through the stack first, so a run of this module alone has traffic on every
topic a patient's journey touches.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka_security import client_options
from shared.settings import Settings
from tests.cloudevents_support import MALFORMED_ON_PURPOSE, kafka_problem
from tests.zz_privacy.test_no_personal_data import (
    instance_topics,
    one_patient_through_the_stack,
    settle,
)

pytestmark = pytest.mark.stack

#: when this session collected the module: the session's messages are the ones after it
SESSION_STARTED_MS = int(time.time() * 1000) - 5_000


@dataclass
class Findings:
    read: Counter[str] = field(default_factory=Counter)
    on_purpose: Counter[str] = field(default_factory=Counter)
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: (source, id) -> the distinct contents seen under it, and where
    contents: dict[tuple[str, str], dict[str, str]] = field(
        default_factory=lambda: defaultdict(dict)
    )


async def read_since(s: Settings, topic: str, since_ms: int, found: Findings) -> None:
    """Every record of `topic` from `since_ms` to the topic's end as it is now."""
    consumer = AIOKafkaConsumer(
        **client_options(s),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh metadata
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        pending = set()
        for tp in tps:
            at = starts.get(tp)
            if at is not None and at.offset < ends[tp]:
                consumer.seek(tp, at.offset)
                pending.add(tp)
        deadline = time.monotonic() + 300
        while pending:
            assert time.monotonic() < deadline, f"{topic}: not read to its end in 300 s"
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=2000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset < ends[tp]:
                        check(r, found)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()


def check(r, found: Findings) -> None:  # type: ignore[no-untyped-def]
    where = f"{r.topic}[{r.partition}]@{r.offset}"
    found.read[r.topic] += 1
    if any(k == MALFORMED_ON_PURPOSE for k, _ in r.headers or ()):
        found.on_purpose[r.topic] += 1
        return
    problem = kafka_problem(r.headers, r.key, r.value)
    if problem:
        found.problems[r.topic].append(f"{where}: {problem}")
        return
    event = json.loads(r.value)
    content = json.dumps(event, sort_keys=True)
    found.contents[(event["source"], event["id"])].setdefault(content, where)


class TestEveryMessageIsACloudEvent:
    async def test_the_sdk_reads_every_message_of_the_session_and_an_id_is_one_event(
        self, running_apps: Settings
    ) -> None:
        s = running_apps
        await one_patient_through_the_stack(s)
        in_flight = await settle(s)
        found = Findings()
        topics = await instance_topics(s)
        for topic in topics:
            await read_since(s, topic, SESSION_STARTED_MS, found)

        assert found.read[s.topic("waymark.referrals.v1")] > 0, (found.read, in_flight)
        broken = {t: (len(p), p[:3]) for t, p in found.problems.items()}
        assert not broken, f"messages a CloudEvents consumer cannot read, by topic: {broken}"
        reused = {k: sorted(v.values())[:3] for k, v in found.contents.items() if len(v) > 1}
        assert not reused, (
            f"{len(reused)} source + id pairs name events with different content, e.g. "
            f"{dict(list(reused.items())[:3])}"
        )
        print(
            f"read {sum(found.read.values())} messages of this session on {len(topics)} topics: "
            f"all CloudEvents in structured mode ({sum(found.on_purpose.values())} malformed "
            f"on purpose by tests, not counted); {len(found.contents)} distinct events"
        )
