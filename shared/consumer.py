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
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import unit_of_work
from shared.events.envelope import CloudEvent
from shared.events.registry import REGISTRY, UnknownEventType
from shared.heartbeat import write_heartbeat
from shared.kafka_security import client_options
from shared.models import ProcessedEvent
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


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help: the message goes straight to the DLQ."""


class DeadLetter(Exception):
    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class _Stopping(Exception):
    """The consumer was stopped while it waited for the database: leave the message unread."""


#: the start of every reason a message is not a Waymark event at all
NOT_AN_EVENT = "not a valid Waymark event"


def _describe(exc: ValidationError, limit: int = 5) -> str:
    """A validation error's fields and messages, without the values: a reason goes into the
    DLQ's headers and the log, and a bad message may hold what must not reach either."""
    errors = exc.errors(include_input=False, include_url=False)
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(whole value)'}: {e['msg']}"
        for e in errors[:limit]
    ]
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def parse_event(value: bytes | None, *, max_bytes: int | None = None) -> CloudEvent:
    """Decode a Kafka value into a CloudEvent whose data matches its registered type.

    Every check that fails is a PermanentError whose reason says which one: oversized (checked
    before decoding, so a huge message costs no parsing), not JSON, not a CloudEvent, an
    unknown event type, an unknown schema version of a known type, or data that does not
    match its type's model."""
    if value is None:
        raise PermanentError("empty message (no value)")
    if max_bytes is not None and len(value) > max_bytes:
        raise PermanentError(f"oversized: {len(value)} bytes > limit {max_bytes}")
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentError(f"not JSON: {exc}") from None
    try:
        event = CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise PermanentError(f"{NOT_AN_EVENT}: not a CloudEvent: {_describe(exc)}") from None
    try:
        version = event.version
    except (ValueError, IndexError):
        raise PermanentError(
            f"{NOT_AN_EVENT}: its dataschema names no version (.../<type>.v<N>.json)"
        ) from None
    try:
        latest = REGISTRY.latest_version(event.type)
    except UnknownEventType as exc:
        raise PermanentError(f"{NOT_AN_EVENT}: {exc}") from None
    try:
        REGISTRY.model(event.type, version)
    except UnknownEventType:
        raise PermanentError(
            f"{NOT_AN_EVENT}: unknown schema version v{version} of "
            f"{event.type} (the newest known is v{latest})"
        ) from None
    try:
        REGISTRY.parse(event)  # validates data against the type's model, upcast to the newest
    except ValidationError as exc:
        raise PermanentError(
            f"{NOT_AN_EVENT}: data does not match {event.type} v{latest}: {_describe(exc)}"
        ) from None
    except (UnknownEventType, ValueError, LookupError, TypeError) as exc:
        # an upcaster that cannot take this data: a code fix, then a re-drive, mends it
        raise PermanentError(
            f"{NOT_AN_EVENT}: cannot upcast {event.type} v{version}: {type(exc).__name__}"
        ) from None
    return event


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
        while not stop.is_set():
            self._beat()
            batches = await self.consumer.getmany(timeout_ms=500, max_records=500)
            # partitions are independent (a patient's events share one), so they are worked
            # on concurrently; within a partition, strictly in order
            await asyncio.gather(
                *(self._process_partition(tp, records, stop) for tp, records in batches.items())
            )

    async def _process_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord], stop: asyncio.Event
    ) -> None:
        if len(records) > 1 and self.sessions is None and self.key_concurrency > 1:
            await self._process_keys_concurrently(tp, records, stop)
            return
        if len(records) > 1 and self.sessions is not None and not stop.is_set():
            # fast path: the partition's run of records in one transaction (inbox rows and
            # effects together, so still all-or-nothing); on any failure it rolls back and
            # the records are taken one by one, with retries and the DLQ
            if await self._apply_batch(records):
                await self._commit(tp, records[-1].offset + 1)
                return
        done = None
        for record in records:
            if stop.is_set() or tp not in self.consumer.assignment():
                break
            try:
                await self.process(record)
            except _Stopping:
                break  # stopped while waiting for the database: not done, read again later
            done = record.offset
        if done is not None:
            await self._commit(tp, done + 1)

    async def _process_keys_concurrently(
        self, tp: TopicPartition, records: list[ConsumerRecord], stop: asyncio.Event
    ) -> None:
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
        await self._commit(tp, records[-1].offset + 1)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.consumer.assignment():
            return  # no longer ours: the new owner re-reads; the inbox dedupes
        try:
            await self.consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError) as exc:
            logger.warning(
                "%s: commit of %s@%d failed (%s); the message will be re-read and deduplicated",
                self.name,
                tp,
                offset,
                exc,
            )

    async def process(self, record: ConsumerRecord) -> None:
        """Handle one record with retries; dead-letter it if it keeps failing."""
        ctx = context_from_kafka_headers(record.headers)
        with (
            attached(ctx),
            _tracer.start_as_current_span(
                f"consume {record.topic}", kind=SpanKind.CONSUMER
            ) as span,
        ):
            span.set_attribute("messaging.consumer.group.name", self.name)
            span.set_attribute("messaging.kafka.offset", record.offset)
            try:
                await self._process_with_retries(record)
            except DeadLetter as dead:
                span.set_status(Status(StatusCode.ERROR, dead.reason))
                await self._dead_letter(record, dead)

    async def _process_with_retries(self, record: ConsumerRecord) -> None:
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
        inserted = await session.exec(  # type: ignore[call-overload]
            insert(ProcessedEvent)
            .values(consumer=self.name, event_id=event.id, topic=record.topic)
            .on_conflict_do_nothing()
            .returning(ProcessedEvent.event_id)
        )
        if inserted.first() is None:
            _duplicates.add(1, {"consumer": self.name})
            logger.info("%s: event %s already processed; skipped", self.name, event.id)
            return False
        await self.handler(session, event, record)
        return True

    async def _apply_batch(self, records: list[ConsumerRecord]) -> bool:
        """Apply every record in one transaction; False (and nothing applied) on any failure."""
        assert self.sessions is not None
        applied = 0
        try:
            events = [
                parse_event(r.value, max_bytes=self.settings.event_max_bytes) for r in records
            ]
            async with unit_of_work(self.sessions) as session:
                for event, record in zip(events, records, strict=True):
                    with (
                        attached(context_from_kafka_headers(record.headers)),
                        _tracer.start_as_current_span(
                            f"consume {record.topic}", kind=SpanKind.CONSUMER
                        ) as span,
                    ):
                        span.set_attribute("messaging.consumer.group.name", self.name)
                        span.set_attribute("messaging.kafka.offset", record.offset)
                        span.set_attribute("messaging.message.id", event.id)
                        applied += await self._apply_in(session, event, record)
        except Exception as exc:  # noqa: BLE001 - any failure: redo one by one
            logger.info(
                "%s: batch of %d failed (%s); processing one by one", self.name, len(records), exc
            )
            return False
        _processed.add(applied, {"consumer": self.name})
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
    engine = make_engine(settings, schema, pool_size=3)
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
