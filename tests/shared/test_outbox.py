"""The transactional outbox and its relay, against the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from shared.db import unit_of_work
from shared.events.envelope import make_event
from shared.events.referrals import ReferralSubmitted
from shared.kafka_security import client_options
from shared.outbox import OutboxRelay, RelayBlocked, add_event
from tests.cloudevents_support import kafka_problem
from tests.helpers import end_offsets, read_topic


def _event(subject: str | None = None):  # type: ignore[no-untyped-def]
    return make_event(
        ReferralSubmitted(
            referral_id=str(uuid.uuid4()),
            from_org="GP-1",
            to_org="PAIN-1",
            to_service_id="svc-1",
            service_category="pain_management",
            reason_codes=["279039007"],
            priority="routine",
            state="submitted",
        ),
        subject=subject or f"pt_{uuid.uuid4().hex[:16]}",
    )


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[None]:
    """The relay's own loop (`run`), as its process runs it, for the block's duration."""
    await relay.start()
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await relay.stop()


async def drain(relay: OutboxRelay) -> None:
    """Start a relay, publish until nothing is left, stop it."""
    await relay.start()
    try:
        while await relay.publish_batch():
            pass
    finally:
        await relay.stop()


class Boom(Exception):
    pass


class TestOutboxWrite:
    async def test_a_rolled_back_transaction_leaves_no_outbox_row_and_no_event(
        self, infra, referrals_sessions, new_topic
    ):
        event = _event()
        with pytest.raises(Boom):
            async with unit_of_work(referrals_sessions) as session:
                add_event(session, topic=new_topic, event=event)
                await session.flush()  # the row really reached the database...
                raise Boom  # ...and the transaction is rolled back
        async with unit_of_work(referrals_sessions) as session:
            n = (
                await session.exec(
                    text("SELECT count(*) FROM outbox WHERE event_id = :e").bindparams(e=event.id)
                )
            ).scalar_one()
        assert n == 0
        await drain(OutboxRelay(settings=infra, schema="referrals", batch_size=500))
        offsets = await end_offsets(infra, new_topic)
        assert sum(offsets.values()) == 0, "nothing may reach the topic"

    async def test_a_committed_row_is_keyed_by_subject_and_carries_the_cloudevent(
        self, infra, referrals_sessions, new_topic
    ):
        event = _event()
        async with unit_of_work(referrals_sessions) as session:
            add_event(session, topic=new_topic, event=event)
        await drain(OutboxRelay(settings=infra, schema="referrals"))
        records = await read_topic(infra, new_topic, until=lambda r: len(r) >= 1)
        assert len(records) == 1
        rec = records[0]
        assert rec.key == event.subject.encode()
        body = json.loads(rec.value)
        assert body["id"] == event.id and body["type"] == event.type
        assert body["specversion"] == "1.0" and body["subject"] == event.subject
        # structured mode exactly (CloudEvents Kafka binding): the SDK's own detection reads it
        assert kafka_problem(rec.headers, rec.key, rec.value) is None
        assert not [k for k, _ in rec.headers if k.startswith("ce_")]


@pytest.fixture(scope="module", autouse=True)
async def no_stack_relay(infra):  # type: ignore[no-untyped-def]
    """These tests run relays of their own over the referrals outbox; the session stack's
    referrals relay (when the whole stack runs) would claim their rows too, and as the
    `referrals` Kafka principal it may not write the tests' scratch topics. It is stopped for
    this module and started again after."""
    from devtools import stack

    part = stack.part_by_name("referrals-relay")
    running = await part.probe(infra)
    if running:
        part.stop(infra)
    yield
    if running:
        await part.start(infra)


class TestRelay:
    async def test_each_row_is_published_exactly_once_across_a_relay_restart(
        self, infra, referrals_sessions, new_topic
    ):
        events = [_event(subject=f"pt_same_{i % 4}_{uuid.uuid4().hex[:4]}") for i in range(60)]
        async with unit_of_work(referrals_sessions) as session:
            for e in events:
                add_event(session, topic=new_topic, event=e)
        first = OutboxRelay(settings=infra, schema="referrals", batch_size=25)
        await first.start()
        published_before_restart = await first.publish_batch()
        await first.stop()  # the relay goes away with rows still unsent
        assert published_before_restart > 0
        await drain(OutboxRelay(settings=infra, schema="referrals", batch_size=25))
        ids = {e.id for e in events}
        records = await read_topic(
            infra,
            new_topic,
            until=lambda r: {json.loads(x.value)["id"] for x in r} >= ids,
            timeout=30,
        )
        counts = Counter(json.loads(r.value)["id"] for r in records)
        assert set(counts) == ids
        assert max(counts.values()) == 1, "no row may be published twice"
        async with unit_of_work(referrals_sessions) as session:
            unsent = (
                await session.exec(
                    text(
                        "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND topic = :t"
                    ).bindparams(t=new_topic)
                )
            ).scalar_one()
        assert unsent == 0

    async def test_two_relays_running_together_publish_each_row_once(
        self, infra, referrals_sessions, new_topic
    ):
        events = [_event() for _ in range(120)]
        async with unit_of_work(referrals_sessions) as session:
            for e in events:
                add_event(session, topic=new_topic, event=e)
        relays = [OutboxRelay(settings=infra, schema="referrals", batch_size=10) for _ in range(2)]
        for r in relays:
            await r.start()

        async def drain(r: OutboxRelay) -> int:
            total = 0
            while n := await r.publish_batch():
                total += n
            return total

        try:
            totals = await asyncio.gather(*(drain(r) for r in relays))
        finally:
            for r in relays:
                await r.stop()
        # the test stack's own referrals relay drains this outbox too, so the two here may
        # publish fewer than all; what matters is that every row is published, once
        assert sum(totals) > 0
        ids = {e.id for e in events}
        records = await read_topic(
            infra, new_topic, until=lambda r: {json.loads(x.value)["id"] for x in r} >= ids
        )
        counts = Counter(json.loads(r.value)["id"] for r in records)
        assert set(counts) == ids
        assert max(counts.values()) == 1

    async def test_one_patients_events_keep_their_order_on_the_partition(
        self, infra, referrals_sessions, new_topic
    ):
        subject = f"pt_order_{uuid.uuid4().hex[:8]}"
        events = [_event(subject=subject) for _ in range(30)]
        for e in events:  # thirty transactions, in order
            async with unit_of_work(referrals_sessions) as session:
                add_event(session, topic=new_topic, event=e)
        await drain(OutboxRelay(settings=infra, schema="referrals", batch_size=7))
        records = await read_topic(infra, new_topic, until=lambda r: len(r) >= 30)
        assert len({r.partition for r in records}) == 1
        assert [json.loads(r.value)["id"] for r in records] == [e.id for e in events]

    async def test_the_relay_is_woken_by_notify_without_waiting_for_the_poll(
        self, infra, referrals_sessions, new_topic
    ):
        # a poll interval far longer than the test may wait: only NOTIFY can wake it
        slow = infra.model_copy(update={"relay_poll_seconds": 3600.0})
        relay = OutboxRelay(settings=slow, schema="referrals")
        async with running(relay):
            await asyncio.sleep(0.5)  # let it drain and go to sleep
            event = _event()
            async with unit_of_work(referrals_sessions) as session:
                add_event(session, topic=new_topic, event=event)
            records = await read_topic(infra, new_topic, until=lambda r: len(r) >= 1, timeout=20)
            assert json.loads(records[0].value)["id"] == event.id

    async def test_a_commit_notified_while_a_batch_is_published_is_not_forgotten(
        self, infra, referrals_sessions, new_topic
    ):
        # only a NOTIFY can wake it; the one for `late` arrives while a batch is in hand
        slow = infra.model_copy(update={"relay_poll_seconds": 3600.0})
        relay = OutboxRelay(settings=slow, schema="referrals")
        publish, late, committed = relay.publish_batch, _event(), asyncio.Event()

        async def publish_while_another_commits() -> int:
            n = await publish()
            if n < relay.batch_size and not committed.is_set():
                async with unit_of_work(referrals_sessions) as session:
                    add_event(session, topic=new_topic, event=late)
                committed.set()
                await asyncio.sleep(0.5)  # its NOTIFY reaches the relay before this returns
            return n

        relay.publish_batch = publish_while_another_commits  # type: ignore[method-assign]
        async with running(relay):
            records = await read_topic(infra, new_topic, until=lambda r: len(r) >= 1, timeout=20)
            assert json.loads(records[0].value)["id"] == late.id


class TestParking:
    async def test_a_row_for_a_missing_topic_is_parked_and_does_not_hold_up_others(
        self, infra, referrals_sessions, new_topic
    ):
        from sqlalchemy import update

        from shared.models import OutboxMessage

        missing = infra.topic(f"gone-{uuid.uuid4().hex[:8]}")
        stuck_key = f"pt_stuck_{uuid.uuid4().hex[:8]}"
        stuck, other = _event(stuck_key), _event()
        async with unit_of_work(referrals_sessions) as session:
            add_event(session, topic=missing, event=stuck)
            add_event(session, topic=new_topic, event=other)
        relay = OutboxRelay(
            settings=infra.model_copy(update={"relay_max_attempts": 3}), schema="referrals"
        )
        await relay.start()
        try:
            for _ in range(4):  # the other row goes; the stuck one fails, then only it is left
                try:
                    await relay.publish_batch()
                except RelayBlocked:
                    pass
            rows = await _rows(referrals_sessions, stuck, other)
            assert rows[stuck.id].parked_at is not None and rows[stuck.id].sent_at is None
            assert rows[stuck.id].attempts == 3
            assert "does not exist" in rows[stuck.id].last_error
            assert rows[other.id].sent_at is not None
            # the topic appears; the same patient's next event on it waits behind the parked
            # one (its partition's order), while another patient's goes
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(**client_options(infra))
            await admin.start()
            await admin.create_topics([NewTopic(missing, 1, 1)])
            behind, free = _event(stuck_key), _event()
            async with unit_of_work(referrals_sessions) as session:
                add_event(session, topic=missing, event=behind)
                add_event(session, topic=missing, event=free)
        finally:
            await relay.stop()
        relay = OutboxRelay(settings=infra, schema="referrals")
        await relay.start()
        try:
            for _ in range(20):  # until the new topic's metadata reaches the relay
                try:
                    await relay.publish_batch()
                except RelayBlocked:
                    await asyncio.sleep(0.5)
                    continue
                if (await _rows(referrals_sessions, free))[free.id].sent_at is not None:
                    break
        finally:
            await relay.stop()
        rows = await _rows(referrals_sessions, behind, free)
        assert rows[behind.id].sent_at is None and rows[behind.id].parked_at is None
        assert rows[free.id].sent_at is not None
        records = await read_topic(infra, missing, until=lambda r: len(r) >= 1)
        assert [json.loads(r.value)["id"] for r in records] == [free.id]
        # clean up: an operator would re-drive or discard; the test discards its rows
        async with unit_of_work(referrals_sessions) as session:
            await session.exec(
                update(OutboxMessage)
                .where(OutboxMessage.key == stuck_key)
                .values(sent_at=datetime.now(UTC))
            )
        await admin.delete_topics([missing])
        await admin.close()


async def _rows(sessions, *events):  # type: ignore[no-untyped-def]
    from shared.models import OutboxMessage

    async with unit_of_work(sessions) as session:
        return {
            r.event_id: r
            for r in (
                await session.exec(
                    select(OutboxMessage).where(OutboxMessage.event_id.in_([e.id for e in events]))
                )
            ).scalars()
        }


class TestOperatingParkedRows:
    async def test_an_operator_lists_parked_rows_and_redrives_them_once_the_topic_exists(
        self, infra, referrals_sessions
    ):
        import subprocess
        import sys

        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        from shared.outbox import parked, redrive
        from shared.settings import settings_env

        missing = infra.topic(f"later-{uuid.uuid4().hex[:8]}")
        event = _event()
        async with unit_of_work(referrals_sessions) as session:
            add_event(session, topic=missing, event=event)
        relay = OutboxRelay(
            settings=infra.model_copy(update={"relay_max_attempts": 2}), schema="referrals"
        )
        await relay.start()
        try:
            for _ in range(3):
                try:
                    await relay.publish_batch()
                except RelayBlocked:
                    pass
        finally:
            await relay.stop()
        assert event.id in [r.event_id for r in await parked(infra, "referrals")]
        listed = subprocess.run(
            [sys.executable, "-m", "devtools.cli", "outbox", "parked", "referrals"],
            capture_output=True,
            text=True,
            env=settings_env(infra),
            timeout=120,
        )
        assert listed.returncode == 0 and event.id in listed.stdout, listed.stderr
        admin = AIOKafkaAdminClient(**client_options(infra))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(missing, 1, 1)])
            assert await redrive(infra, "referrals", [event.id]) == 1
            assert event.id not in [r.event_id for r in await parked(infra, "referrals")]
            relay = OutboxRelay(settings=infra, schema="referrals")
            await relay.start()
            try:
                for _ in range(20):
                    try:
                        await relay.publish_batch()
                    except RelayBlocked:
                        await asyncio.sleep(0.5)
                        continue
                    if (await _rows(referrals_sessions, event))[event.id].sent_at:
                        break
            finally:
                await relay.stop()
            records = await read_topic(infra, missing, until=lambda r: len(r) >= 1)
            assert [json.loads(r.value)["id"] for r in records] == [event.id]
        finally:
            await admin.delete_topics([missing])
            await admin.close()
