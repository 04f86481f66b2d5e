"""The transactional outbox and its relay.

A service writes its change and an outbox row in one transaction (`add_event`). The relay
publishes unsent rows to Kafka with the idempotent producer (acks=all), keyed by the event's
subject (the patient's pseudonymous id) so one patient's events stay in order, then marks
them sent. Rows are claimed with SELECT ... FOR UPDATE SKIP LOCKED, so two relays can run
without publishing a row twice; the relay wakes on LISTEN/NOTIFY (a trigger notifies after
commit) and polls as a fallback.

Delivery is at-least-once: a relay killed after Kafka acknowledged a batch but before it
marked the rows sent publishes them again on restart. Consumers dedupe by event id.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind
from sqlalchemy import BigInteger, bindparam, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import connect_kwargs, make_engine, make_sessionmaker, unit_of_work
from shared.events.binding import event_bytes, kafka_headers
from shared.events.envelope import CloudEvent
from shared.heartbeat import write_heartbeat
from shared.kafka_security import client_options
from shared.models import OutboxMessage
from shared.settings import Settings, get_settings
from shared.telemetry import (
    attached,
    context_from_traceparent,
    current_traceparent,
    kafka_headers_from_context,
    setup_telemetry,
)

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
_published = metrics.get_meter(__name__).create_counter(
    "waymark.outbox.published", description="events published from the outbox"
)
_parked = metrics.get_meter(__name__).create_counter(
    "waymark.outbox.parked", description="outbox rows parked after repeated failures"
)


_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
# the oldest unsent rows no other relay holds, except those of a (topic, key) with a parked row:
# they wait behind it, so one patient's events stay in order
_CLAIM = (
    select(
        _OUTBOX.c.seq,
        _OUTBOX.c.event_id,
        _OUTBOX.c.topic,
        _OUTBOX.c.key,
        _OUTBOX.c.event_type,
        _OUTBOX.c.payload,
        _OUTBOX.c.traceparent,
        _OUTBOX.c.attempts,
    )
    .where(
        _OUTBOX.c.sent_at.is_(None),
        _OUTBOX.c.parked_at.is_(None),
        tuple_(_OUTBOX.c.topic, _OUTBOX.c.key).not_in(
            select(_OUTBOX.c.topic, _OUTBOX.c.key).where(
                _OUTBOX.c.parked_at.is_not(None), _OUTBOX.c.sent_at.is_(None)
            )
        ),
    )
    .order_by(_OUTBOX.c.seq)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
# one statement text for every batch (asyncpg prepares it once per connection), the rows' seqs
# as one array parameter; Core, so the ORM does not match the batch's 500 loaded rows in Python
_MARK_SENT = text("UPDATE outbox SET sent_at = now() WHERE seq = ANY(:seqs)").bindparams(
    bindparam("seqs", type_=ARRAY(BigInteger))
)


#: how often a relay writes its heartbeat file at most
HEARTBEAT_SECONDS = 1.0


class RelayBlocked(Exception):
    """Every row of a batch failed: the relay backs off before trying again."""


def notify_channel(schema: str) -> str:
    return f"waymark_outbox_{schema}"


def add_event(session: AsyncSession, *, topic: str, event: CloudEvent) -> OutboxMessage:
    """Stage an event in the caller's transaction. `topic` is the full (prefixed) name."""
    row = outbox_row(topic=topic, event=event)
    session.add(row)
    return row


def outbox_row(*, topic: str, event: CloudEvent) -> OutboxMessage:
    """The row `add_event` stages, for a write path that inserts it in one statement with the
    change (shared.db.insert_rows), in the same transaction."""
    return OutboxMessage(
        event_id=event.id,
        topic=topic,
        key=event.subject,
        event_type=event.type,
        payload=event.model_dump(mode="json"),
        traceparent=current_traceparent(),
    )


def make_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    opts: dict[str, object] = dict(
        **client_options(settings),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=settings.relay_max_batch_bytes,
        request_timeout_ms=30000,
    )
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


class OutboxRelay:
    def __init__(
        self,
        *,
        settings: Settings,
        schema: str,
        engine: AsyncEngine | None = None,
        producer: AIOKafkaProducer | None = None,
        heartbeat: Path | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.settings = settings
        self.schema = schema
        self._own_engine = engine is None
        self.engine = engine or make_engine(settings, schema, pool_size=2)
        self.sessions = make_sessionmaker(self.engine)
        self._own_producer = producer is None
        self.producer = producer or make_producer(settings)
        self.heartbeat = heartbeat
        self.batch_size = batch_size or settings.relay_batch_size
        self._wake = asyncio.Event()
        self._listen_conn: asyncpg.Connection | None = None
        self._admin = AIOKafkaAdminClient(**client_options(settings))
        self._topics: set[str] = set()
        self._topics_checked = 0.0
        self._beaten = float("-inf")

    async def start(self) -> None:
        if self._own_producer:
            await self.producer.start()
        await self._admin.start()
        await self._listen()

    async def _listen(self) -> None:
        s = self.settings
        try:
            self._listen_conn = await asyncpg.connect(**connect_kwargs(s, self.schema))
            await self._listen_conn.add_listener(
                notify_channel(self.schema), lambda *_: self._wake.set()
            )
        except (OSError, asyncpg.PostgresError) as exc:
            # polling still delivers; LISTEN is only the fast path
            logger.warning("outbox relay: LISTEN unavailable (%s); polling only", exc)
            self._listen_conn = None

    async def stop(self) -> None:
        await self._admin.close()
        if self._listen_conn is not None:
            await self._listen_conn.close()
        if self._own_producer:
            await self.producer.stop()
        if self._own_engine:
            await self.engine.dispose()

    async def publish_batch(self) -> int:
        """Publish up to batch_size unsent rows; return how many were published.

        A row that fails (its topic does not exist, the broker refuses it) does not hold up
        rows of other topics; after `relay_max_attempts` it is parked with its error, and
        later rows of the same key and topic wait behind it, so one patient's events stay in
        order on their partition.
        """
        async with unit_of_work(self.sessions) as session:
            # Core rows, not ORM objects: the relay only reads them (loading 500 entities a
            # batch was a quarter of its CPU)
            conn = await session.connection()
            rows = (await conn.execute(_CLAIM, {"limit": self.batch_size})).all()
            if not rows:
                return 0
            known = await self._known_topics({r.topic for r in rows})
            sends: list[tuple[Row[Any], Any]] = []
            for row in rows:
                if row.topic not in known:
                    sends.append(
                        (row, UnknownTopicOrPartitionError(f"topic {row.topic} does not exist"))
                    )
                    continue
                with (
                    attached(context_from_traceparent(row.traceparent)),
                    _tracer.start_as_current_span(
                        f"publish {row.event_type}", kind=SpanKind.PRODUCER
                    ) as span,
                ):
                    span.set_attribute("messaging.destination.name", row.topic)
                    span.set_attribute("messaging.message.id", row.event_id)
                    # structured mode: the event is the value; no ce_* header (binding.py)
                    headers = kafka_headers(kafka_headers_from_context())
                    sends.append(
                        (
                            row,
                            await self.producer.send(
                                row.topic,
                                value=event_bytes(row.payload),
                                key=row.key.encode(),
                                headers=headers,
                            ),
                        )
                    )
            # every row acknowledged by all in-sync replicas, or its error
            results = await asyncio.gather(
                *(f for _, f in sends if not isinstance(f, Exception)), return_exceptions=True
            )
            it = iter(results)
            outcome = [(row, f if isinstance(f, Exception) else next(it)) for row, f in sends]
            failed_topics = {row.topic for row, res in outcome if isinstance(res, Exception)}
            # a failure fails its whole topic in this batch, so a later row of a key is never
            # published before an earlier one (a row that did reach Kafka is sent again later;
            # consumers dedupe by event id)
            sent = [row.seq for row, _ in outcome if row.topic not in failed_topics]
            if sent:
                await conn.execute(_MARK_SENT, {"seqs": sent})
            for row, res in outcome:
                if row.topic in failed_topics:
                    await self._record_failure(conn, row, res)
            _published.add(len(sent), {"schema": self.schema})
        # raised after the commit, so the attempts and parking are kept
        if failed_topics and not sent:
            raise RelayBlocked(f"nothing published; failing topics: {sorted(failed_topics)}")
        return len(sent)

    async def _record_failure(self, conn: AsyncConnection, row: Row[Any], res: object) -> None:
        """Count a failed attempt on the row, with its error; park it after the last one."""
        error = res if isinstance(res, Exception) else None
        attempts = row.attempts + 1
        last_error = (
            f"{type(error).__name__}: {error}" if error else "another row of its topic failed"
        )[:2000]
        parked_at = None
        if attempts >= self.settings.relay_max_attempts:
            parked_at = datetime.now(UTC)
            _parked.add(1, {"schema": self.schema})
            logger.error(
                "outbox %s: event %s parked after %d attempts: %s",
                self.schema,
                row.event_id,
                attempts,
                last_error,
            )
        await conn.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.seq == row.seq)
            .values(attempts=attempts, last_error=last_error, parked_at=parked_at)
        )

    async def _known_topics(self, wanted: set[str]) -> set[str]:
        """Topics that exist, from the broker (looked up again when a row names a topic not
        seen yet, at most once a second): a send to a missing topic would otherwise wait for
        metadata until it timed out, holding up every row."""
        now = time.monotonic()
        if not wanted <= self._topics and now - self._topics_checked > 1.0:
            self._topics = set(await self._admin.list_topics())
            self._topics_checked = now
        return self._topics

    def _beat(self) -> None:
        # at most once a second: a heartbeat per batch (a file written and renamed) was ~9%
        # of a busy relay's samples (issue #17's profile); the supervisor's probe allows 15 s
        now = time.monotonic()
        if self.heartbeat is not None and now - self._beaten >= HEARTBEAT_SECONDS:
            write_heartbeat(self.heartbeat)
            self._beaten = now

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            self._beat()
            # cleared before the claim, not after it: a commit notified while a batch was being
            # published would otherwise be forgotten, and its rows wait for the next poll
            # (relay_poll_seconds: the last events of a burst arrived ~2 s late, issue #17)
            self._wake.clear()
            try:
                n = await self.publish_batch()
                backoff = 0.5
            except RelayBlocked as exc:
                logger.warning("outbox relay: %s; retrying in %.1fs", exc, backoff)
                await _wait_any(stop, None, backoff)
                backoff = min(backoff * 2, 30)
                continue
            except Exception:
                logger.exception("outbox relay: publish failed; retrying in %.1fs", backoff)
                await _wait_any(stop, None, backoff)
                backoff = min(backoff * 2, 30)
                continue
            if n == self.batch_size:
                continue  # more waiting
            await _wait_any(stop, self._wake, self.settings.relay_poll_seconds)
            if self._wake.is_set() and self.settings.relay_linger_seconds > 0:
                # woken by a commit: let the commits close behind it join the batch (a relay
                # woken by each of a busy writer's commits published a handful of rows per
                # transaction and Kafka request)
                await _wait_any(stop, None, self.settings.relay_linger_seconds)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    done, pending = await asyncio.wait(
        waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    for p in pending:
        p.cancel()


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_relay(schema: str, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    setup_telemetry(f"{schema}-relay", settings)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    # named like the part (`waymark status` reads it): care_plans -> care-plans-relay
    relay = OutboxRelay(
        settings=settings,
        schema=schema,
        heartbeat=settings.run_dir / f"{schema.replace('_', '-')}-relay.alive",
    )
    stop = asyncio.Event()
    install_stop_signals(stop)
    await relay.start()
    logger.info("outbox relay for %s running", schema)
    try:
        await relay.run(stop)
    finally:
        await relay.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Publish a service's outbox to Kafka")
    parser.add_argument("schema")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_relay(args.schema))


if __name__ == "__main__":
    main()


# --- operating parked rows (`waymark outbox ...`) ------------------------------------------------


async def parked(settings: Settings, schema: str) -> list[OutboxMessage]:
    """Rows parked after repeated failures, oldest first."""
    engine = make_engine(settings, schema, pool_size=1)
    try:
        async with unit_of_work(make_sessionmaker(engine)) as session:
            rows = await session.exec(  # type: ignore[call-overload]
                select(OutboxMessage)
                .where(
                    OutboxMessage.parked_at.is_not(None),  # type: ignore[union-attr]
                    OutboxMessage.sent_at.is_(None),
                )  # type: ignore[union-attr]
                .order_by(OutboxMessage.seq)
            )
            return list(rows.scalars().all())
    finally:
        await engine.dispose()


async def redrive(settings: Settings, schema: str, event_ids: list[str] | None) -> int:
    """Put parked rows back in line (all of them, or the named ones); the relay publishes
    them in their original order. Returns how many."""
    engine = make_engine(settings, schema, pool_size=1)
    try:
        async with unit_of_work(make_sessionmaker(engine)) as session:
            stmt = (
                update(OutboxMessage)  # type: ignore[call-overload]
                .where(
                    OutboxMessage.parked_at.is_not(None),  # type: ignore[union-attr]
                    OutboxMessage.sent_at.is_(None),
                )  # type: ignore[union-attr]
                .values(parked_at=None, attempts=0)
            )
            if event_ids:
                stmt = stmt.where(OutboxMessage.event_id.in_(event_ids))  # type: ignore[attr-defined]
            result = await session.exec(stmt)
            return int(result.rowcount or 0)
    finally:
        await engine.dispose()
