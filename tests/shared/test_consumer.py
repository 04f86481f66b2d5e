"""The idempotent consumer against the real Kafka and PostgreSQL: inbox dedupe, retries with
backoff, the dead-letter topic, and carrying on after a bad message."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from shared.consumer import IdempotentConsumer, PermanentError, parse_event
from shared.db import make_engine, make_sessionmaker, unit_of_work
from shared.events.envelope import make_event
from shared.events.referrals import ReferralSubmitted
from shared.kafka_security import client_options
from shared.outbox import event_bytes
from tests.helpers import eventually, owner_ddl, read_topic

EFFECTS_DDL = """CREATE TABLE IF NOT EXISTS test_consumer_effect (
    id SERIAL PRIMARY KEY, consumer TEXT NOT NULL, event_id TEXT NOT NULL)"""


def _event(referral_id: str | None = None):  # type: ignore[no-untyped-def]
    return make_event(
        ReferralSubmitted(
            referral_id=referral_id or str(uuid.uuid4()),
            from_org="GP-1",
            to_org="PAIN-1",
            to_service_id="svc-1",
            service_category="pain_management",
            reason_codes=["279039007"],
            priority="routine",
            state="submitted",
        ),
        subject=f"pt_{uuid.uuid4().hex[:16]}",
    )


@pytest.fixture(scope="module")
async def effects_table(infra, referrals_sessions):  # type: ignore[no-untyped-def]
    await owner_ddl(infra, "referrals", EFFECTS_DDL)
    return "test_consumer_effect"


async def _effects(sessions, consumer: str) -> Counter:  # type: ignore[no-untyped-def]
    async with unit_of_work(sessions) as s:
        rows = (
            await s.exec(
                text("SELECT event_id FROM test_consumer_effect WHERE consumer=:c").bindparams(
                    c=consumer
                )
            )
        ).all()
    return Counter(r[0] for r in rows)


async def _produce(settings, topic: str, values: list[bytes], key: bytes = b"k") -> None:  # type: ignore[no-untyped-def]
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, value=v, key=key)
    finally:
        await producer.stop()


class Recorder:
    """A handler whose effect is a row in test_consumer_effect, in the inbox's transaction."""

    def __init__(
        self, name: str, fail_for: dict[str, int] | None = None, always_fail: set[str] | None = None
    ) -> None:
        self.name = name
        self.fail_for = dict(fail_for or {})  # referral_id -> failures left
        self.always_fail = always_fail or set()
        self.calls: Counter = Counter()

    async def __call__(self, session, event, record) -> None:  # type: ignore[no-untyped-def]
        rid = event.data["referral_id"]
        self.calls[rid] += 1
        await session.exec(
            text(
                "INSERT INTO test_consumer_effect (consumer, event_id) VALUES (:c, :e)"
            ).bindparams(c=self.name, e=event.id)
        )
        if rid in self.always_fail:
            raise RuntimeError(f"downstream refuses {rid}")
        if self.fail_for.get(rid, 0) > 0:
            self.fail_for[rid] -= 1
            raise ConnectionError("transient failure")


async def _run_until(consumer: IdempotentConsumer, done, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    await consumer.start()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await eventually(done, timeout=timeout)
    finally:
        stop.set()
        await task
        await consumer.stop()


class TestIdempotentConsumer:
    async def test_a_redelivered_event_has_no_second_effect(
        self, infra, referrals_sessions, effects_table, new_topic
    ):
        name = f"c-{uuid.uuid4().hex[:8]}"
        handler = Recorder(name)
        event = _event()
        # the same event twice on the topic: what a relay restart after publishing does
        await _produce(infra, new_topic, [event_bytes(event.model_dump(mode="json"))] * 2)
        consumer = IdempotentConsumer(
            name=name,
            topics=[new_topic],
            handler=handler,
            settings=infra,
            sessions=referrals_sessions,
        )
        # both copies read and their offsets committed
        await _run_until(consumer, lambda: _committed(consumer, new_topic, total=2))
        effects = await _effects(referrals_sessions, name)
        assert effects == Counter({event.id: 1})
        async with unit_of_work(referrals_sessions) as s:
            inbox = (
                await s.exec(
                    text("SELECT count(*) FROM inbox WHERE consumer=:c").bindparams(c=name)
                )
            ).scalar_one()
        assert inbox == 1

    async def test_a_message_reread_after_a_crash_before_the_offset_commit_is_not_applied_twice(
        self, infra, referrals_sessions, effects_table, new_topic
    ):
        name = f"c-{uuid.uuid4().hex[:8]}"
        handler = Recorder(name)
        event = _event()
        await _produce(infra, new_topic, [event_bytes(event.model_dump(mode="json"))])
        records = await read_topic(infra, new_topic, until=lambda r: len(r) == 1)
        # a first member applied the event, then died before committing its offset
        first = IdempotentConsumer(
            name=name,
            topics=[new_topic],
            handler=handler,
            settings=infra,
            sessions=referrals_sessions,
        )
        await first.dlq_producer.start()
        await first.process(records[0])
        await first.dlq_producer.stop()
        # the group's next member reads from the last committed offset: the same message
        second = IdempotentConsumer(
            name=name,
            topics=[new_topic],
            handler=handler,
            settings=infra,
            sessions=referrals_sessions,
        )
        await _run_until(second, lambda: _committed(second, new_topic))
        assert await _effects(referrals_sessions, name) == Counter({event.id: 1})
        assert handler.calls[event.data["referral_id"]] == 1  # the duplicate never reached it

    async def test_a_poison_message_goes_to_the_dlq_with_its_error_and_later_messages_are_processed(
        self, infra, referrals_sessions, effects_table, new_topic
    ):
        name = f"c-{uuid.uuid4().hex[:8]}"
        good1, failing, good2 = _event(), _event(), _event()
        handler = Recorder(name, always_fail={failing.data["referral_id"]})
        values = [
            event_bytes(good1.model_dump(mode="json")),
            b"\x00not json at all",
            event_bytes(failing.model_dump(mode="json")),
            json.dumps({"id": "x", "type": "uk.waymark.unknown"}).encode(),
            event_bytes(good2.model_dump(mode="json")),
        ]
        await _produce(infra, new_topic, values, key=b"same-partition")
        consumer = IdempotentConsumer(
            name=name,
            topics=[new_topic],
            handler=handler,
            settings=infra,
            sessions=referrals_sessions,
        )
        await _run_until(consumer, lambda: handler.calls[good2.data["referral_id"]] >= 1)

        effects = await _effects(referrals_sessions, name)
        assert effects == Counter({good1.id: 1, good2.id: 1}), (
            "the failing event's effect must be rolled back each time"
        )
        assert handler.calls[failing.data["referral_id"]] == infra.consumer_max_attempts
        dead = await read_topic(infra, f"{new_topic}.dlq", until=lambda r: len(r) >= 3)
        assert len(dead) == 3
        by_value = {r.value: dict(r.headers) for r in dead}
        assert b"not JSON" in by_value[values[1]]["dlq.reason"]
        assert by_value[values[1]]["dlq.attempts"] == b"1"  # not retried: it can never parse
        assert b"downstream refuses" in by_value[values[2]]["dlq.reason"]
        assert by_value[values[2]]["dlq.attempts"] == str(infra.consumer_max_attempts).encode()
        assert b"not a valid Waymark event" in by_value[values[3]]["dlq.reason"]
        for headers in by_value.values():
            assert headers["dlq.original.topic"] == new_topic.encode()
            assert headers["dlq.consumer"] == name.encode()

    async def test_a_failing_event_in_a_batch_loses_and_doubles_none_of_the_others(
        self, infra, referrals_sessions, effects_table, new_topic
    ):
        name = f"c-{uuid.uuid4().hex[:8]}"
        before, failing, after, seen = _event(), _event(), _event(), _event()
        handler = Recorder(name, always_fail={failing.data["referral_id"]})
        # one partition, all read in one batch: `seen` is in it twice (a relay re-publish)
        batch = [before, seen, failing, seen, after]
        await _produce(
            infra,
            new_topic,
            [event_bytes(e.model_dump(mode="json")) for e in batch],
            key=b"one-partition",
        )
        consumer = IdempotentConsumer(
            name=name,
            topics=[new_topic],
            handler=handler,
            settings=infra,
            sessions=referrals_sessions,
        )
        await _run_until(consumer, lambda: _committed(consumer, new_topic, total=len(batch)))
        # the batch's transaction rolled back with the failure; taken one by one, each other
        # event is applied once and the failing one goes to the DLQ
        effects = await _effects(referrals_sessions, name)
        assert effects == Counter({before.id: 1, seen.id: 1, after.id: 1})
        dead = await read_topic(infra, f"{new_topic}.dlq", until=lambda r: len(r) >= 1)
        assert [json.loads(r.value)["id"] for r in dead] == [failing.id]

    async def test_a_transient_failure_is_retried_and_then_applied_once(
        self, infra, referrals_sessions, effects_table, new_topic
    ):
        name = f"c-{uuid.uuid4().hex[:8]}"
        event = _event()
        handler = Recorder(name, fail_for={event.data["referral_id"]: 2})
        await _produce(infra, new_topic, [event_bytes(event.model_dump(mode="json"))])
        consumer = IdempotentConsumer(
            name=name,
            topics=[new_topic],
            handler=handler,
            settings=infra,
            sessions=referrals_sessions,
        )
        await _run_until(consumer, lambda: _committed(consumer, new_topic))
        assert handler.calls[event.data["referral_id"]] == 3
        assert await _effects(referrals_sessions, name) == Counter({event.id: 1})
        assert sum((await _dlq_size(infra, new_topic)).values()) == 0

    async def test_the_offset_is_committed_only_after_the_effect(
        self, infra, referrals_sessions, effects_table, new_topic
    ):
        name = f"c-{uuid.uuid4().hex[:8]}"
        events = [_event() for _ in range(10)]
        handler = Recorder(name)
        await _produce(infra, new_topic, [event_bytes(e.model_dump(mode="json")) for e in events])
        consumer = IdempotentConsumer(
            name=name,
            topics=[new_topic],
            handler=handler,
            settings=infra,
            sessions=referrals_sessions,
        )
        await _run_until(consumer, lambda: _committed(consumer, new_topic, total=10))
        effects = await _effects(referrals_sessions, name)
        assert set(effects) == {e.id for e in events} and max(effects.values()) == 1


async def _committed(consumer: IdempotentConsumer, topic: str, total: int = 1) -> bool:
    assigned = [tp for tp in consumer.consumer.assignment() if tp.topic == topic]
    if not assigned:
        return False
    committed = 0
    for tp in assigned:
        committed += (await consumer.consumer.committed(tp)) or 0
    return committed >= total


async def _dlq_size(settings, topic: str):  # type: ignore[no-untyped-def]
    from tests.helpers import end_offsets

    return await end_offsets(settings, f"{topic}.dlq")


class DatabaseDoor:
    """A TCP door in front of the real PostgreSQL: open, it passes connections through; shut,
    it refuses new ones and cuts those open, as a restarting database does to its clients."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._pass, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def shut(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            await self.server.wait_closed()
            self.server = None

    async def _pass(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()
                self.writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


class TestTheDatabaseAway:
    async def test_events_wait_for_the_database_instead_of_going_to_the_dlq(
        self, infra, referrals_sessions, effects_table, new_topic
    ):
        door = DatabaseDoor(infra.pg_port)
        await door.open()
        engine = make_engine(infra.model_copy(update={"pg_port": door.port}), "referrals")
        name = f"c-{uuid.uuid4().hex[:8]}"
        events = [_event() for _ in range(3)]
        consumer = IdempotentConsumer(
            name=name,
            topics=[new_topic],
            handler=Recorder(name),
            settings=infra,
            sessions=make_sessionmaker(engine),
        )
        await door.shut()  # the database goes away
        await _produce(infra, new_topic, [event_bytes(e.model_dump(mode="json")) for e in events])
        stop = asyncio.Event()
        await consumer.start()
        task = asyncio.create_task(consumer.run(stop))
        try:
            await eventually(lambda: consumer.consumer.assignment(), timeout=60)
            # far longer than the attempts and their backoff last (3 x 0.05 s in the tests)
            await asyncio.sleep(4)
            assert sum((await _dlq_size(infra, new_topic)).values()) == 0
            await door.open()  # back, on the same port
            await eventually(lambda: _committed(consumer, new_topic, total=3), timeout=60)
        finally:
            stop.set()
            await task
            await consumer.stop()
            await door.shut()
            await engine.dispose()
        assert await _effects(referrals_sessions, name) == Counter({e.id: 1 for e in events})
        assert sum((await _dlq_size(infra, new_topic)).values()) == 0


class TestParseEvent:
    @pytest.mark.parametrize(
        "value, reason",
        [
            (None, "empty message"),
            (b"", "not JSON"),
            (b"{", "not JSON"),
            (b"\xff\xfe", "not JSON"),
            (b"[]", "not a valid Waymark event"),
            (b'{"id": "1"}', "not a valid Waymark event"),
        ],
    )
    def test_undecodable_messages_are_permanent_errors(self, value, reason):
        with pytest.raises(PermanentError, match=reason):
            parse_event(value)

    def test_an_event_whose_data_breaks_its_schema_is_rejected(self):
        event = _event().model_dump(mode="json")
        event["data"]["priority"] = "whenever"
        with pytest.raises(PermanentError, match="priority"):
            parse_event(json.dumps(event).encode())

    def test_an_event_of_an_unknown_type_is_rejected(self):
        event = _event().model_dump(mode="json")
        event["type"] = "uk.waymark.referral.teleported"
        with pytest.raises(PermanentError, match="unknown event type"):
            parse_event(json.dumps(event).encode())

    def test_a_valid_event_round_trips(self):
        event = _event()
        parsed = parse_event(event_bytes(event.model_dump(mode="json")))
        assert parsed == event


class TestRebalance:
    async def test_a_member_leaving_mid_stream_loses_nothing_and_applies_nothing_twice(
        self, infra, referrals_sessions, effects_table, new_topic
    ):
        name = f"c-{uuid.uuid4().hex[:8]}"
        events = [_event() for _ in range(300)]
        handler = Recorder(name)
        members = [
            IdempotentConsumer(
                name=name,
                topics=[new_topic],
                handler=handler,
                settings=infra,
                sessions=referrals_sessions,
            )
            for _ in range(2)
        ]
        stops = [asyncio.Event(), asyncio.Event()]
        for m in members:
            await m.start()
        tasks = [asyncio.create_task(m.run(st)) for m, st in zip(members, stops, strict=True)]
        producer = AIOKafkaProducer(**client_options(infra), acks="all")
        await producer.start()
        try:
            for i, e in enumerate(events):
                await producer.send(
                    new_topic, value=event_bytes(e.model_dump(mode="json")), key=e.subject.encode()
                )
                if i == 150:
                    # one member leaves while events are flowing: its partitions move over
                    stops[0].set()
                    await tasks[0]
                    await members[0].stop()
            await producer.flush()
        finally:
            await producer.stop()
        try:
            await eventually(
                lambda: _all_applied(referrals_sessions, name, len(events)), timeout=60
            )
        finally:
            stops[1].set()
            await tasks[1]
            await members[1].stop()
        effects = await _effects(referrals_sessions, name)
        assert set(effects) == {e.id for e in events}
        assert max(effects.values()) == 1


async def _all_applied(sessions, name: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return sum((await _effects(sessions, name)).values()) >= n


class TestKeyConcurrency:
    async def test_without_a_database_keys_run_side_by_side_and_each_key_stays_in_order(
        self, infra, new_topic
    ):
        import random

        events = {k: [_event() for _ in range(15)] for k in ("pt_a", "pt_b", "pt_c", "pt_d")}
        producer = AIOKafkaProducer(**client_options(infra), acks="all")
        await producer.start()
        try:
            order = [(k, e) for i in range(15) for k, evs in events.items() for e in [evs[i]]]
            for k, e in order:  # interleaved, all on one partition
                await producer.send_and_wait(
                    new_topic,
                    partition=0,
                    key=k.encode(),
                    value=event_bytes(e.model_dump(mode="json")),
                )
        finally:
            await producer.stop()
        seen: dict[str, list[str]] = {k: [] for k in events}
        in_flight = 0
        peak = 0

        async def handler(_session, event, record) -> None:  # type: ignore[no-untyped-def]
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(random.uniform(0, 0.01))
            seen[record.key.decode()].append(event.id)
            in_flight -= 1

        consumer = IdempotentConsumer(
            name=f"c-{uuid.uuid4().hex[:8]}",
            topics=[new_topic],
            handler=handler,
            settings=infra,
            sessions=None,
            key_concurrency=8,
        )
        await _run_until(consumer, lambda: sum(map(len, seen.values())) >= 60)
        for k, evs in events.items():
            assert seen[k] == [e.id for e in evs], f"{k} out of order"
        assert peak > 1, "different patients were not worked on side by side"
