"""The idempotent Kafka consumer every Waymark part uses.

At-least-once reading with exactly-once effects:
- offsets are committed by hand, only after a message's effect is durable, and only for
  partitions this member still owns (a rebalance may take a partition mid-batch);
- with a database, (consumer, event id) is inserted into the inbox in the same transaction as
  the effect, so a redelivered event is recognised and skipped;
- a failing message is retried a bounded number of times with exponential backoff, then sent
  to `<topic>.dlq` with the error in its headers, and the consumer carries on;
- a message that cannot be an event at all (oversized, not JSON, not a CloudEvent, an unknown
  type or schema version, data that does not match its type) is dead-lettered at once:
  retrying cannot fix it. `shared/dlq.py` (`waymark dlq`) lists dead letters and re-drives
  them once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import unit_of_work
from shared.events.envelope import CloudEvent
from shared.events.parsing import NOT_AN_EVENT as NOT_AN_EVENT
from shared.events.parsing import PermanentError as PermanentError
from shared.events.parsing import parse_event as parse_event
from shared.heartbeat import write_heartbeat
from shared.inbox import record_new
from shared.kafka_security import client_options
from shared.settings import Settings
from shared.telemetry import attached, context_from_kafka_headers

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
_meter = metrics.get_meter(__name__)
_processed = _meter.create_counter("waymark.consumer.processed")
_duplicates = _meter.create_counter("waymark.consumer.duplicates")
_dead = _meter.create_counter("waymark.consumer.dead_lettered")

#: handler(session or None, event, record). With a database the session is the transaction
#: the inbox row is written in; the handler's effect must use it.
Handler = Callable[[AsyncSession | None, CloudEvent, ConsumerRecord], Awaitable[None]]


class DeadLetter(Exception):
    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class _Stopping(Exception):
    """The consumer was stopped while it waited for the database: leave the message unread."""


class IdempotentConsumer:
    def __init__(
        self,
        *,
        name: str,
        topics: list[str],
        handler: Handler,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession] | None,
        group_id: str | None = None,
        heartbeat: Path | None = None,
        max_attempts: int | None = None,
        backoff_seconds: float | None = None,
        dlq_producer: AIOKafkaProducer | None = None,
        key_concurrency: int = 1,
    ) -> None:
        self.name = name
        self.key_concurrency = key_concurrency
        self.topics = topics
        self.handler = handler
        self.settings = settings
        self.sessions = sessions
        self.heartbeat = heartbeat
        self.max_attempts = max_attempts or settings.consumer_max_attempts
        self.backoff = (
            settings.consumer_backoff_seconds if backoff_seconds is None else backoff_seconds
        )
        self.consumer = AIOKafkaConsumer(
            *topics,
            **client_options(settings),
            group_id=group_id or name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_interval_ms=300000,
            session_timeout_ms=30000,
            heartbeat_interval_ms=3000,
        )
        self._stop: asyncio.Event | None = None
        # partitions in their transactions at once: no more than the pool's connections
        self._partitions_gate = asyncio.Semaphore(settings.consumer_concurrency)
        self._own_dlq = dlq_producer is None
        self.dlq_producer = dlq_producer or AIOKafkaProducer(
            **client_options(settings), enable_idempotence=True, acks="all"
        )

    async def start(self) -> None:
        if self._own_dlq:
            await self.dlq_producer.start()
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()  # leaves the group, so partitions move on at once
        if self._own_dlq:
            await self.dlq_producer.stop()

    def _beat(self) -> None:
        if self.heartbeat is not None:
            write_heartbeat(self.heartbeat)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the message in hand is finished and committed first."""
        self._stop = stop
        committing: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                self._beat()
                batches = await self.consumer.getmany(
                    timeout_ms=500, max_records=self.settings.consumer_max_records
                )
                if not batches:
                    continue
                # partitions are independent (a patient's events share one), so they are
                # worked on concurrently, each in its own transaction; within a partition,
                # strictly in order
                done = await asyncio.gather(
                    *(self._process_partition(tp, recs, stop) for tp, recs in batches.items())
                )
                offsets = {tp: o for tp, o in zip(batches, done, strict=True) if o is not None}
                # these effects are durable: their offsets are committed while the next round
                # is fetched and applied. One commit at a time, so offsets reach Kafka in order
                if committing is not None:
                    await committing
                committing = asyncio.create_task(self._commit(offsets)) if offsets else None
        finally:
            if committing is not None:
                await committing

    async def _process_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord], stop: asyncio.Event
    ) -> int | None:
        """Work through one partition's records in order; return the offset to commit next
        (None when nothing was done)."""
        if len(records) > 1 and self.sessions is None and self.key_concurrency > 1:
            await self._process_keys_concurrently(records)
            return records[-1].offset + 1
        if self.sessions is None:
            return await self._process_in_order(tp, records, stop)
        async with self._partitions_gate:
            return await self._process_in_order(tp, records, stop)

    async def _process_in_order(
        self, tp: TopicPartition, records: list[ConsumerRecord], stop: asyncio.Event
    ) -> int | None:
        done = None
        for run, events in self._runs(records):
            if stop.is_set() or tp not in self.consumer.assignment():
                break
            # fast path: a run of events in one transaction (inbox rows and effects together,
            # so still all-or-nothing); on any failure it rolls back and the run is taken one
            # by one, with retries and the DLQ
            if len(run) > 1 and await self._apply_batch(run, events):
                done = run[-1].offset
                continue
            for record, event in zip(run, events, strict=True):
                if stop.is_set() or tp not in self.consumer.assignment():
                    return None if done is None else done + 1
                try:
                    await self.process(record, event)
                except _Stopping:  # stopped while waiting for the database: read again later
                    return None if done is None else done + 1
                done = record.offset
        return None if done is None else done + 1

    def _runs(
        self, records: list[ConsumerRecord]
    ) -> Iterator[tuple[list[ConsumerRecord], list[CloudEvent | None]]]:
        """A partition's records as runs: with a database, each stretch of records that parse
        as events (applied in one transaction), and on its own each one that does not (it goes
        to the DLQ without holding up the rest). Without one, all of them (parsed one by one)."""
        if self.sessions is None:
            yield records, [None] * len(records)
            return
        run: list[ConsumerRecord] = []
        events: list[CloudEvent | None] = []
        for record in records:
            try:
                event = parse_event(record.value, max_bytes=self.settings.event_max_bytes)
            except PermanentError:
                if run:
                    yield run, events
                yield [record], [None]
                run, events = [], []
                continue
            run.append(record)
            events.append(event)
        if run:
            yield run, events

    async def _process_keys_concurrently(self, records: list[ConsumerRecord]) -> None:
        """Without a database (the bridge), a partition's records for different keys (patients)
        are worked on at the same time; each key's records strictly in order. The offset is
        committed once the whole run is done."""
        by_key: dict[bytes | None, list[ConsumerRecord]] = {}
        for record in records:
            by_key.setdefault(record.key, []).append(record)
        gate = asyncio.Semaphore(self.key_concurrency)

        async def one_key(recs: list[ConsumerRecord]) -> None:
            async with gate:
                for record in recs:
                    await self.process(record)

        await asyncio.gather(*(one_key(recs) for recs in by_key.values()))

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        # a partition no longer ours is left alone: the new owner re-reads; the inbox dedupes
        owned = {tp: o for tp, o in offsets.items() if tp in self.consumer.assignment()}
        if not owned:
            return
        try:
            await self.consumer.commit(owned)
        except (CommitFailedError, IllegalStateError) as exc:
            logger.warning(
                "%s: commit of %s failed (%s); the messages will be re-read and deduplicated",
                self.name,
                ", ".join(f"{tp}@{o}" for tp, o in owned.items()),
                exc,
            )

    @contextmanager
    def _span(self, record: ConsumerRecord, event: CloudEvent | None) -> Iterator[Span]:
        """The consumer span of one record, a child of the trace its headers carry."""
        with (
            attached(context_from_kafka_headers(record.headers)),
            _tracer.start_as_current_span(
                f"consume {record.topic}", kind=SpanKind.CONSUMER
            ) as span,
        ):
            span.set_attribute("messaging.consumer.group.name", self.name)
            span.set_attribute("messaging.kafka.offset", record.offset)
            if event is not None:
                span.set_attribute("messaging.message.id", event.id)
            yield span

    async def process(self, record: ConsumerRecord, event: CloudEvent | None = None) -> None:
        """Handle one record with retries; dead-letter it if it keeps failing. `event` is the
        record already parsed, if it was."""
        with self._span(record, event) as span:
            try:
                await self._process_with_retries(record, event)
            except DeadLetter as dead:
                span.set_status(Status(StatusCode.ERROR, dead.reason))
                await self._dead_letter(record, dead)

    async def _process_with_retries(self, record: ConsumerRecord, event: CloudEvent | None) -> None:
        if event is None:
            try:
                event = parse_event(record.value, max_bytes=self.settings.event_max_bytes)
            except PermanentError as exc:
                raise DeadLetter(str(exc), 1) from None
            trace.get_current_span().set_attribute("messaging.message.id", event.id)
        attempt = 1
        while True:
            try:
                await self._apply(event, record)
                return
            except PermanentError as exc:
                raise DeadLetter(f"{type(exc).__name__}: {exc}", attempt) from None
            except Exception as exc:
                if attempt >= self.max_attempts:
                    if not await self._database_was_away():
                        raise DeadLetter(f"{type(exc).__name__}: {exc}", attempt) from None
                    attempt = 1  # the message was never really tried: its attempts start again
                    continue
                delay = self.backoff * 2 ** (attempt - 1)
                logger.warning(
                    "%s: event %s failed (attempt %d/%d): %s; retrying in %.2fs",
                    self.name,
                    event.id,
                    attempt,
                    self.max_attempts,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                attempt += 1

    async def _database_was_away(self) -> bool:
        """Asked when a message has used up its attempts. If the database does not answer, the
        message was never really tried (a restarting database must not send a stream of good
        events to the DLQ): wait until it answers, beating meanwhile, and say so. False when
        it answers at once: the failure is the message's."""
        if self.sessions is None:
            return False
        waited, delay = False, max(self.backoff, 0.05)
        while True:
            try:
                async with self.sessions() as session:
                    await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
                if waited:
                    logger.warning("%s: the database answers again", self.name)
                return waited
            except Exception as exc:  # noqa: BLE001 - any failure to answer is "away"
                if self._stop is not None and self._stop.is_set():
                    raise _Stopping from None
                if not waited:
                    logger.warning(
                        "%s: the database does not answer (%s); waiting for it", self.name, exc
                    )
                waited = True
                self._beat()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _apply(self, event: CloudEvent, record: ConsumerRecord) -> None:
        if self.sessions is None:
            await self.handler(None, event, record)
            _processed.add(1, {"consumer": self.name})
            return
        async with unit_of_work(self.sessions) as session:
            applied = await self._apply_in(session, event, record)
        if applied:
            _processed.add(1, {"consumer": self.name})

    async def _apply_in(
        self, session: AsyncSession, event: CloudEvent, record: ConsumerRecord
    ) -> bool:
        """Record the event in the inbox and apply it, in the caller's transaction; False if
        the inbox already had it."""
        if not await record_new(
            session, consumer=self.name, topic=record.topic, event_ids=[event.id]
        ):
            _duplicates.add(1, {"consumer": self.name})
            logger.info("%s: event %s already processed; skipped", self.name, event.id)
            return False
        await self.handler(session, event, record)
        return True

    async def _apply_batch(
        self, records: list[ConsumerRecord], events: list[CloudEvent | None]
    ) -> bool:
        """Apply a run of one partition's records, parsed, in one transaction: one inbox
        statement for the run, then the handler for each event the inbox did not have.
        False (and nothing applied) on any failure."""
        assert self.sessions is not None
        applied = 0
        try:
            async with unit_of_work(self.sessions) as session:
                new = await record_new(
                    session,
                    consumer=self.name,
                    topic=records[0].topic,
                    event_ids=[e.id for e in events if e is not None],
                )
                for event, record in zip(events, records, strict=True):
                    if event is None or event.id not in new:
                        continue
                    new.discard(event.id)  # a second copy in the same run is a duplicate too
                    with self._span(record, event):
                        await self.handler(session, event, record)
                    applied += 1
        except Exception as exc:  # noqa: BLE001 - any failure: redo one by one
            logger.info(
                "%s: batch of %d failed (%s); processing one by one", self.name, len(records), exc
            )
            return False
        _processed.add(applied, {"consumer": self.name})
        if applied < len(records):
            _duplicates.add(len(records) - applied, {"consumer": self.name})
            logger.info(
                "%s: %d of %d events already processed; skipped",
                self.name,
                len(records) - applied,
                len(records),
            )
        return True

    async def _dead_letter(self, record: ConsumerRecord, dead: DeadLetter) -> None:
        headers = list(record.headers or ()) + [
            ("dlq.reason", dead.reason[:2000].encode()),
            ("dlq.attempts", str(dead.attempts).encode()),
            ("dlq.consumer", self.name.encode()),
            ("dlq.original.topic", record.topic.encode()),
            ("dlq.original.partition", str(record.partition).encode()),
            ("dlq.original.offset", str(record.offset).encode()),
        ]
        await self.dlq_producer.send_and_wait(
            f"{record.topic}.dlq", value=record.value, key=record.key, headers=headers
        )
        _dead.add(1, {"consumer": self.name})
        logger.error(
            "%s: %s[%d]@%d dead-lettered after %d attempt(s): %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            dead.attempts,
            dead.reason,
        )


async def run_consumer_process(
    *,
    part: str,
    schema: str,
    build: Callable[..., IdempotentConsumer],
    settings: Settings | None = None,
) -> None:
    """Run one service's consumer as a process (`waymark run <part>`): telemetry, its own
    engine, a heartbeat file `waymark status` reads, graceful stop on SIGTERM/SIGINT.
    `build(settings, sessions, heartbeat=...)` makes the consumer."""
    from shared.db import make_engine, make_sessionmaker
    from shared.outbox import install_stop_signals
    from shared.settings import get_settings
    from shared.telemetry import setup_telemetry

    settings = settings or get_settings()
    setup_telemetry(part, settings)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings, schema, pool_size=settings.consumer_concurrency)
    consumer = build(
        settings, make_sessionmaker(engine), heartbeat=settings.run_dir / f"{part}.alive"
    )
    stop = asyncio.Event()
    install_stop_signals(stop)
    await consumer.start()
    logger.info("%s consuming %s", part, ", ".join(consumer.topics))
    try:
        await consumer.run(stop)
    finally:
        await consumer.stop()
        await engine.dispose()


def consumer_main(part: str, schema: str, build: Callable[..., IdempotentConsumer]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_consumer_process(part=part, schema=schema, build=build))
