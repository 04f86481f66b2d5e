"""Events per second through Waymark's pipeline against raw Kafka, on the same broker, in the
same run.

  pipeline: outbox rows (already committed) -> OutboxRelay (idempotent producer, acks=all)
            -> Kafka -> IdempotentConsumer (inbox row per event, one transaction each,
            manual offset commits)
  raw:      aiokafka producer (idempotent, acks=all) -> Kafka -> aiokafka consumer, same
            payloads, same topic layout

Run on demand: `python bench/pipeline.py [--events N] [--repeat R]`. It starts (or reuses) the
local infrastructure and works as the `bench` instance (database waymark_bench, topics
bench.*), so it never touches dev or test data. Record results in bench/RESULTS.md.
"""

from __future__ import annotations

import os

for _k, _v in {
    "WAYMARK_INSTANCE": "bench",
    "WAYMARK_DB_NAME": "waymark_bench",
    "WAYMARK_TOPIC_PREFIX": "bench.",
    "WAYMARK_TEMPORAL_NAMESPACE": "waymark-bench",
}.items():
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from devtools import stack  # noqa: E402
from shared.consumer import IdempotentConsumer  # noqa: E402
from shared.db import make_engine, make_sessionmaker, unit_of_work  # noqa: E402
from shared.events.binding import kafka_headers  # noqa: E402
from shared.events.envelope import make_event  # noqa: E402
from shared.events.referrals import ReferralSubmitted  # noqa: E402
from shared.kafka_security import client_options  # noqa: E402
from shared.models import OutboxMessage  # noqa: E402
from shared.outbox import OutboxRelay, event_bytes  # noqa: E402
from shared.settings import Settings, get_settings  # noqa: E402


def make_events(n: int) -> list:  # type: ignore[type-arg]
    return [
        make_event(
            ReferralSubmitted(
                referral_id=str(uuid.uuid4()),
                from_org="GP-A81001",
                to_org="PAIN-RTH",
                to_service_id="svc-pain",
                service_category="pain_management",
                reason_codes=["279039007", "35489007"],
                priority="routine",
                state="submitted",
            ),
            subject=f"pt_{i % 500:04d}",
        )
        for i in range(n)
    ]


async def new_topic(s: Settings, name: str) -> str:
    topic = s.topic(f"{name}-{uuid.uuid4().hex[:8]}")
    admin = AIOKafkaAdminClient(**client_options(s))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 6, 1), NewTopic(f"{topic}.dlq", 1, 1)])
    finally:
        await admin.close()
    return topic


async def run_raw(s: Settings, events: list) -> float:  # type: ignore[type-arg]
    topic = await new_topic(s, "raw")
    payloads = [(e.subject.encode(), event_bytes(e.model_dump(mode="json"))) for e in events]
    consumer = AIOKafkaConsumer(
        topic,
        **client_options(s),
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    producer = AIOKafkaProducer(
        **client_options(s), enable_idempotence=True, acks="all", linger_ms=5
    )
    await producer.start()
    t0 = time.perf_counter()

    async def produce() -> None:
        futures = [
            await producer.send(topic, value=v, key=k, headers=kafka_headers()) for k, v in payloads
        ]
        await asyncio.gather(*futures)

    async def consume() -> None:
        seen = 0
        while seen < len(payloads):
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            seen += sum(len(b) for b in batches.values())
            for tp, recs in batches.items():
                await consumer.commit({tp: recs[-1].offset + 1})

    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - t0
    await producer.stop()
    await consumer.stop()
    return elapsed


async def run_pipeline(s: Settings, events: list) -> tuple[float, float]:  # type: ignore[type-arg]
    topic = await new_topic(s, "pipe")
    engine = make_engine(s, "referrals", pool_size=5)
    sessions = make_sessionmaker(engine)
    # the write side: outbox rows committed in transactions of 100, as requests would
    t0 = time.perf_counter()
    for i in range(0, len(events), 100):
        async with unit_of_work(sessions) as session:
            await session.exec(
                insert(OutboxMessage).values(
                    [  # type: ignore[call-overload]
                        dict(
                            event_id=e.id,
                            topic=topic,
                            key=e.subject,
                            event_type=e.type,
                            payload=e.model_dump(mode="json"),
                            traceparent=None,
                        )
                        for e in events[i : i + 100]
                    ]
                )
            )
    write_s = time.perf_counter() - t0

    done = asyncio.Event()
    count = 0

    async def handler(session, event, record) -> None:  # type: ignore[no-untyped-def]
        nonlocal count
        count += 1
        if count >= len(events):
            done.set()

    consumer = IdempotentConsumer(
        name=f"bench-{uuid.uuid4().hex[:6]}",
        topics=[topic],
        handler=handler,
        settings=s,
        sessions=sessions,
    )
    await consumer.start()
    relay = OutboxRelay(settings=s, schema="referrals", engine=engine, batch_size=500)
    await relay.start()
    stop = asyncio.Event()
    t1 = time.perf_counter()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(consumer.run(stop))]
    await done.wait()
    elapsed = time.perf_counter() - t1
    stop.set()
    await asyncio.gather(*tasks)
    await relay.stop()
    await consumer.stop()
    async with unit_of_work(sessions) as session:
        await session.exec(text("DELETE FROM outbox WHERE topic = :t").bindparams(t=topic))
    await engine.dispose()
    return elapsed, write_s


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    s = get_settings()
    await stack.up(s, infra_only=True)
    raw, pipe, writes = [], [], []
    for _ in range(args.repeat):
        events = make_events(args.events)
        raw.append(await run_raw(s, events))
        p, w = await run_pipeline(s, events)
        pipe.append(p)
        writes.append(w)
    n = args.events
    raw_rate = n / statistics.median(raw)
    pipe_rate = n / statistics.median(pipe)
    write_rate = n / statistics.median(writes)
    print(f"machine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"events per run: {n}, runs: {args.repeat} (medians)")
    print(f"raw aiokafka produce->consume:            {raw_rate:10.0f} events/s")
    print(f"outbox->relay->Kafka->idempotent consumer: {pipe_rate:10.0f} events/s")
    print(f"ratio pipeline/raw:                        {pipe_rate / raw_rate:10.3f}")
    print(f"(write side, outbox inserts in 100-row transactions: {write_rate:.0f} rows/s)")


if __name__ == "__main__":
    asyncio.run(main())
