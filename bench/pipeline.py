"""Events per second through Waymark's pipeline against raw Kafka, on the same broker, in the
same run.

  pipeline: outbox rows (already committed) -> OutboxRelay (idempotent producer, acks=all)
            -> Kafka -> IdempotentConsumer (an inbox row per event, written with the
            effects in one transaction per partition batch; offsets committed by hand after)
  raw:      aiokafka producer (idempotent, acks=all) -> Kafka -> aiokafka consumer, same
            payloads, same topic layout

Run on demand: `python -m bench.pipeline [--events N] [--repeat R] [--relay-backlog N]`. Every
event must be applied once (the inbox has a row each, the handler saw each once, the DLQ is
empty), or it prints FAILED and no figure and exits 1. It starts (or reuses) the
local infrastructure and works as the `bench` instance (database waymark_bench, topics
bench.*), so it never touches dev or test data. Record results in bench/RESULTS.md.
"""

from __future__ import annotations

import os

for _k, _v in {
    "WAYMARK_INSTANCE": "bench",
    "WAYMARK_API_PORT_BASE": "18700",
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
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
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


async def end_offsets(s: Settings, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client_options(s), group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh topic metadata
        parts = consumer.partitions_for_topic(topic) or set()
        return await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
    finally:
        await consumer.stop()


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


class BenchFailed(Exception):
    """An event was lost, applied twice or dead-lettered: no figure is printed."""


async def write_outbox(sessions, topic: str, events: list, per_tx: int = 100) -> float:  # type: ignore[no-untyped-def,type-arg]
    """Outbox rows committed in transactions of `per_tx`, as requests would; seconds taken."""
    t0 = time.perf_counter()
    for i in range(0, len(events), per_tx):
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
                        for e in events[i : i + per_tx]
                    ]
                )
            )
    return time.perf_counter() - t0


async def delete_outbox(sessions, topic: str) -> None:  # type: ignore[no-untyped-def]
    async with unit_of_work(sessions) as session:
        await session.exec(text("DELETE FROM outbox WHERE topic = :t").bindparams(t=topic))


async def run_pipeline(s: Settings, events: list) -> tuple[float, float]:  # type: ignore[type-arg]
    topic = await new_topic(s, "pipe")
    # engines as the processes have them: the consumer's pool holds consumer_concurrency
    # connections (run_consumer_process), the relay makes its own small one
    engine = make_engine(s, "referrals", pool_size=s.consumer_concurrency)
    sessions = make_sessionmaker(engine)
    write_s = await write_outbox(sessions, topic, events)

    done = asyncio.Event()
    calls: Counter[str] = Counter()

    async def handler(session, event, record) -> None:  # type: ignore[no-untyped-def]
        calls[event.id] += 1
        if len(calls) >= len(events):
            done.set()

    name = f"bench-{uuid.uuid4().hex[:6]}"
    consumer = IdempotentConsumer(
        name=name, topics=[topic], handler=handler, settings=s, sessions=sessions
    )
    await consumer.start()
    relay = OutboxRelay(settings=s, schema="referrals", batch_size=500)
    await relay.start()
    stop = asyncio.Event()
    t1 = time.perf_counter()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(consumer.run(stop))]
    try:
        await asyncio.wait_for(done.wait(), timeout=max(60.0, len(events) / 100))
    except TimeoutError:
        raise BenchFailed(
            f"{len(events) - len(calls)} of {len(events)} events never reached the handler"
        ) from None
    finally:
        elapsed = time.perf_counter() - t1
        stop.set()
        await asyncio.gather(*tasks)
        await relay.stop()
        await consumer.stop()
    async with unit_of_work(sessions) as session:
        inbox = (
            await session.exec(
                text("SELECT count(*) FROM inbox WHERE consumer = :c").bindparams(c=name)
            )
        ).scalar_one()
    await delete_outbox(sessions, topic)
    await engine.dispose()
    twice = sum(1 for n in calls.values() if n > 1)
    dead = sum((await end_offsets(s, f"{topic}.dlq")).values())
    if twice or inbox != len(events) or dead or set(calls) != {e.id for e in events}:
        raise BenchFailed(
            f"events applied twice {twice}, inbox rows {inbox} of {len(events)}, "
            f"dead-lettered {dead}"
        )
    return elapsed, write_s


async def run_relay_backlog(s: Settings, n: int) -> float:
    """The relay alone: a committed backlog of `n` outbox rows drained to Kafka; seconds."""
    topic = await new_topic(s, "backlog")
    engine = make_engine(s, "referrals", pool_size=1)
    sessions = make_sessionmaker(engine)
    await write_outbox(sessions, topic, make_events(n), per_tx=1000)
    relay = OutboxRelay(settings=s, schema="referrals", batch_size=500)
    await relay.start()
    try:
        t0 = time.perf_counter()
        published = 0
        while published < n:
            sent = await relay.publish_batch()
            if not sent:
                raise BenchFailed(f"the relay published {published} of {n} rows, then none")
            published += sent
        elapsed = time.perf_counter() - t0
    finally:
        await relay.stop()
    if (got := sum((await end_offsets(s, topic)).values())) != n:
        raise BenchFailed(f"{got} messages on the topic for a backlog of {n} rows")
    await delete_outbox(sessions, topic)
    await engine.dispose()
    return elapsed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--relay-backlog",
        type=int,
        default=0,
        metavar="N",
        help="also time the relay alone draining a committed backlog of N rows (0: not)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    s = get_settings()
    await stack.up(s, infra_only=True)
    raw, pipe, writes, backlog = [], [], [], []
    try:
        for _ in range(args.repeat):
            events = make_events(args.events)
            raw.append(await run_raw(s, events))
            p, w = await run_pipeline(s, events)
            pipe.append(p)
            writes.append(w)
            if args.relay_backlog:
                backlog.append(await run_relay_backlog(s, args.relay_backlog))
    except BenchFailed as exc:
        print(f"FAILED, no figures: {exc}")
        return 1
    n = args.events
    raw_rate = n / statistics.median(raw)
    pipe_rate = n / statistics.median(pipe)
    write_rate = n / statistics.median(writes)
    print(f"machine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"events per run: {n}, runs: {args.repeat} (medians)")
    print(f"raw aiokafka produce->consume:            {raw_rate:10.0f} events/s")
    print(f"outbox->relay->Kafka->idempotent consumer: {pipe_rate:10.0f} events/s")
    print(f"ratio pipeline/raw:                        {pipe_rate / raw_rate:10.3f}")
    print(f"(write side, outbox inserts in 100-row transactions: {write_rate:.0f} rows/s)")
    if backlog:
        rate = args.relay_backlog / statistics.median(backlog)
        print(f"relay alone, a backlog of {args.relay_backlog} rows:   {rate:10.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
