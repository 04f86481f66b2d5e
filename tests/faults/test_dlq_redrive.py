"""Re-driving dead letters after a fix (`shared/dlq.py`, `waymark dlq`), against the real Kafka
broker and PostgreSQL, with two real idempotent consumers reading one topic.

A consumer with a bug dead-letters an event its neighbour (another consumer group on the same
topic) applies without trouble. Once the bug is fixed, the event is re-driven to the shared
topic: the fixed consumer applies it once, the neighbour's inbox recognises its id and skips
it, a second re-drive publishes nothing, and a message that can never be an event is refused
(or, forced, goes round once and lands in the DLQ again — it never loops).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from sqlalchemy import text

from devtools.stack import REPO_ROOT
from shared import dlq
from shared.consumer import IdempotentConsumer, PermanentError
from shared.db import unit_of_work
from shared.events.binding import kafka_headers
from shared.events.envelope import make_event
from shared.events.referrals import ReferralSubmitted
from shared.kafka_security import client_options
from shared.outbox import event_bytes
from shared.settings import Settings, settings_env
from tests.cloudevents_support import kafka_problem
from tests.helpers import end_offsets, eventually, owner_ddl

pytestmark = pytest.mark.stack

EFFECTS_DDL = """CREATE TABLE IF NOT EXISTS test_redrive_effect (
    id SERIAL PRIMARY KEY, consumer TEXT NOT NULL, event_id TEXT NOT NULL)"""


def _event():  # type: ignore[no-untyped-def]
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
        subject=f"pt_{uuid.uuid4().hex[:16]}",
    )


def _bytes(event) -> bytes:  # type: ignore[no-untyped-def]
    return event_bytes(event.model_dump(mode="json"))


@dataclass
class Handler:
    """Records its effect in test_redrive_effect, in the inbox's transaction. While `bug` is
    set it cannot handle the events in `breaks` (a permanent failure: straight to the DLQ)."""

    name: str
    breaks: set[str] = field(default_factory=set)
    bug: bool = False
    calls: Counter = field(default_factory=Counter)

    async def __call__(self, session, event, record) -> None:  # type: ignore[no-untyped-def]
        self.calls[event.id] += 1
        if self.bug and event.id in self.breaks:
            raise PermanentError(f"bug: cannot handle {event.type}")
        await session.exec(
            text("INSERT INTO test_redrive_effect (consumer, event_id) VALUES (:c, :e)").bindparams(
                c=self.name, e=event.id
            )
        )


@pytest.fixture(scope="module")
async def effects_table(infra, referrals_sessions):  # type: ignore[no-untyped-def]
    await owner_ddl(infra, "referrals", EFFECTS_DDL)


async def _effects(sessions, consumer: str) -> Counter:  # type: ignore[no-untyped-def]
    async with unit_of_work(sessions) as s:
        rows = (
            await s.exec(
                text("SELECT event_id FROM test_redrive_effect WHERE consumer=:c").bindparams(
                    c=consumer
                )
            )
        ).all()
    return Counter(r[0] for r in rows)


async def _produce(settings: Settings, topic: str, values: list[bytes], key: bytes) -> None:
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, value=v, key=key, headers=kafka_headers())
    finally:
        await producer.stop()


class Running:
    """Consumers running in the background until the test ends."""

    def __init__(self, consumers: list[IdempotentConsumer]) -> None:
        self.consumers = consumers
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Running:
        for c in self.consumers:
            await c.start()
            self.tasks.append(asyncio.create_task(c.run(self.stop)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for c in self.consumers:
            await c.stop()

    async def caught_up(self, settings: Settings, topic: str) -> bool:
        """Every consumer has committed the topic up to its current end. (Only before a
        re-drive: its Kafka transaction's commit marker takes an offset of its own, which no
        consumer commits past until the next record; after one, wait for a later event.)"""
        ends = {tp: n for tp, n in (await end_offsets(settings, topic)).items() if n}
        for c in self.consumers:
            for tp, n in ends.items():
                if tp not in c.consumer.assignment():
                    return False
                if ((await c.consumer.committed(TopicPartition(tp.topic, tp.partition))) or 0) < n:
                    return False
        return True


async def _copies(settings: Settings, topic: str, value: bytes, *, expect: int = 0) -> int:
    """How many times `value` is on the topic (committed records, read to the end).

    With `expect`, first wait until at least that many are visible: a Kafka transaction's
    commit returns before the broker has written its markers to the partitions, so a copy
    just committed may be a moment from being readable under read_committed."""

    async def count() -> int:
        return sum(1 for r in await dlq.read_all(settings, topic) if r.value == value)

    if expect:
        await eventually(lambda: _at_least(count(), expect), timeout=30, interval=0.3)
    return await count()


async def _at_least(n: Any, wanted: int) -> bool:
    return await n >= wanted


async def _applied_by_both(sessions, handlers, event_id: str) -> bool:  # type: ignore[no-untyped-def]
    for h in handlers:
        if not (await _effects(sessions, h.name))[event_id]:
            return False
    return True


async def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    """`waymark dlq ...` as an operator runs it: a process of its own, the same settings."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devtools.cli",
        "dlq",
        *args,
        cwd=REPO_ROOT,
        env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


@pytest.fixture
async def pair(
    infra,
    referrals_sessions,
    effects_table,  # type: ignore[no-untyped-def]
    new_topic,
) -> AsyncIterator[tuple[Handler, Handler, Running]]:
    marker = uuid.uuid4().hex[:8]
    buggy, healthy = Handler(f"buggy-{marker}"), Handler(f"healthy-{marker}")
    consumers = [
        IdempotentConsumer(
            name=h.name, topics=[new_topic], handler=h, settings=infra, sessions=referrals_sessions
        )
        for h in (buggy, healthy)
    ]
    async with Running(consumers) as running:
        yield buggy, healthy, running


class TestRedrive:
    async def test_a_dead_letter_is_redriven_after_the_fix_applied_once_and_never_twice(
        self, infra, referrals_sessions, new_topic, pair
    ):  # type: ignore[no-untyped-def]
        buggy, healthy, running = pair
        good1, victim, good2 = _event(), _event(), _event()
        unfixable = b"\x00poison: not json " + uuid.uuid4().hex.encode()
        buggy.breaks.add(victim.id)
        buggy.bug = True
        key = f"k-{uuid.uuid4().hex[:8]}".encode()  # one partition: strictly in this order
        await _produce(
            infra, new_topic, [_bytes(good1), _bytes(victim), unfixable, _bytes(good2)], key
        )
        await eventually(lambda: running.caught_up(infra, new_topic), timeout=60)

        # the bug: the buggy consumer dead-lettered the victim, its neighbour applied it
        assert await _effects(referrals_sessions, buggy.name) == Counter({good1.id: 1, good2.id: 1})
        assert await _effects(referrals_sessions, healthy.name) == Counter(
            {good1.id: 1, victim.id: 1, good2.id: 1}
        )
        letters = await dlq.list_dead_letters(infra, new_topic)
        assert {(d.consumer, d.value) for d in letters} == {
            (buggy.name, _bytes(victim)),
            (buggy.name, unfixable),
            (healthy.name, unfixable),
        }
        victim_letter = next(d for d in letters if d.value == _bytes(victim))
        assert "bug: cannot handle" in victim_letter.reason
        assert victim_letter.event_id == victim.id and victim_letter.redriven_to is None
        assert all("not JSON" in d.reason for d in letters if d.value == unfixable)
        print(
            f"\ndead letters before the fix: {len(letters)} "
            f"({', '.join(f'{d.consumer}: {d.reason[:40]}' for d in letters)})"
        )

        # the fix, then the re-drive of the buggy consumer's dead letters. Before it the handler
        # saw the victim once or twice: twice when the victim came in one fetch with good1,
        # the run's transaction rolled back and the run was taken one by one
        failing_calls = buggy.calls[victim.id]
        assert failing_calls in (1, 2)
        buggy.bug = False
        report = await dlq.redrive(infra, new_topic, consumer=buggy.name)
        assert [(d.value, d.consumer) for d, _ in report.redriven] == [(_bytes(victim), buggy.name)]
        assert report.published == 1
        assert [(d.value, d.consumer) for d, _ in report.refused] == [(unfixable, buggy.name)]
        assert "not JSON" in report.refused[0][1]
        assert await _copies(infra, new_topic, _bytes(victim), expect=2) == 2
        # the copy, and the DLQ's record that the letter was re-driven, are CloudEvents in the
        # Kafka binding's structured mode like every other message
        copy = [r for r in await dlq.read_all(infra, new_topic) if r.value == _bytes(victim)][-1]
        markers = [
            r
            for r in await dlq.read_all(infra, f"{new_topic}.dlq")
            if dlq.REDRIVE_OF in dict(r.headers)
        ]
        assert len(markers) == 1
        assert [kafka_problem(r.headers, r.key, r.value) for r in (copy, *markers)] == [None] * 2
        # an event after the copy, on its partition: once both consumers applied it, both
        # have dealt with the copy
        after = _event()
        await _produce(infra, new_topic, [_bytes(after)], key)
        await eventually(
            lambda: _applied_by_both(referrals_sessions, (buggy, healthy), after.id), timeout=60
        )

        # exactly once: applied by the fixed consumer, skipped by its neighbour's inbox
        assert await _effects(referrals_sessions, buggy.name) == Counter(
            {good1.id: 1, victim.id: 1, good2.id: 1, after.id: 1}
        )
        assert await _effects(referrals_sessions, healthy.name) == Counter(
            {good1.id: 1, victim.id: 1, good2.id: 1, after.id: 1}
        )
        assert healthy.calls[victim.id] == 1, "the neighbour's inbox must absorb the copy"
        assert buggy.calls[victim.id] == failing_calls + 1, "once after the fix, no more"

        # again, as an operator would, from the command line: nothing is published twice
        topic_end = await end_offsets(infra, new_topic)
        code, out = await _cli(infra, "redrive", new_topic, "--consumer", buggy.name)
        print(f"second re-drive (CLI):\n{out}")
        assert code == 0, out
        assert "republished 0 message(s)" in out and "1 already redriven" in out
        assert await end_offsets(infra, new_topic) == topic_end
        assert await _copies(infra, new_topic, _bytes(victim)) == 2
        code, out = await _cli(infra, "list", new_topic, "--consumer", buggy.name)
        assert code == 0, out
        assert "1 pending, 1 redriven" in out and victim.id in out

        # a message that can never be an event: forced, it goes round once, no more
        letters = await dlq.list_dead_letters(infra, new_topic, consumer=buggy.name)
        poison = next(d for d in letters if d.value == unfixable)
        report = await dlq.redrive(infra, new_topic, offsets=[poison.ref], force=True)
        assert report.published == 1 and not report.refused
        good3 = _event()  # after the copy, on the same partition
        await _produce(infra, new_topic, [_bytes(good3)], key)
        await eventually(
            lambda: _applied_by_both(referrals_sessions, (buggy, healthy), good3.id), timeout=60
        )
        again = [d for d in await dlq.list_dead_letters(infra, new_topic) if d.value == unfixable]
        # the two first deaths (one per consumer), and one more each for the forced copy
        assert sorted((d.consumer, d.redrive_count) for d in again) == sorted(
            [(buggy.name, 0), (healthy.name, 0), (buggy.name, 1), (healthy.name, 1)]
        )
        assert all(
            d.header(dlq.REDRIVEN_FROM) == f"{poison.dlq}:{poison.ref}"
            for d in again
            if d.redrive_count == 1
        )
        # and without --force the tool refuses it: nothing re-drives it by itself
        topic_end = await end_offsets(infra, new_topic)
        report = await dlq.redrive(infra, new_topic)
        assert report.published == 0
        assert {d.value for d, _ in report.refused} == {unfixable}
        assert await end_offsets(infra, new_topic) == topic_end
        assert await _copies(infra, new_topic, unfixable, expect=2) == 2
        print(
            f"re-driven: victim {await _copies(infra, new_topic, _bytes(victim)) - 1} time, "
            f"applied {buggy.calls[victim.id] - 1}x after the fix by {buggy.name}, "
            f"{healthy.calls[victim.id] - 1}x again by {healthy.name}; the unfixable "
            f"message dead-lettered {len(again)} times in all, then refused"
        )

    async def test_a_dry_run_publishes_nothing_and_offsets_pick_dead_letters(
        self, infra, referrals_sessions, new_topic, pair
    ):  # type: ignore[no-untyped-def]
        buggy, healthy, running = pair
        events = [_event() for _ in range(3)]
        buggy.breaks.update(e.id for e in events)
        buggy.bug = True
        await _produce(infra, new_topic, [_bytes(e) for e in events], b"one-key")
        await eventually(lambda: running.caught_up(infra, new_topic), timeout=60)
        letters = await dlq.list_dead_letters(infra, new_topic, consumer=buggy.name)
        assert [d.event_id for d in letters] == [e.id for e in events]
        end = sum((await end_offsets(infra, new_topic)).values())

        report = await dlq.redrive(infra, new_topic, dry_run=True)
        assert len(report.redriven) == 3
        assert sum((await end_offsets(infra, new_topic)).values()) == end
        assert all(d.redriven_to is None for d in await dlq.list_dead_letters(infra, new_topic))

        buggy.bug = False
        middle = letters[1]
        report = await dlq.redrive(infra, new_topic, offsets=[str(middle.offset), "0:999"])
        assert [d.event_id for d, _ in report.redriven] == [events[1].id]
        assert report.not_found == ["0:999"]
        after = _event()
        await _produce(infra, new_topic, [_bytes(after)], b"one-key")
        await eventually(
            lambda: _applied_by_both(referrals_sessions, (buggy, healthy), after.id), timeout=60
        )
        assert await _effects(referrals_sessions, buggy.name) == Counter(
            {events[1].id: 1, after.id: 1}
        )
        code, out = await _cli(infra, "redrive", new_topic, "--offset", f"0:{middle.offset}")
        assert code == 0 and "1 already redriven" in out, out
        listed = {
            d.event_id: d.redriven_to
            for d in await dlq.list_dead_letters(infra, new_topic, consumer=buggy.name)
        }
        assert listed[events[1].id] is not None
        assert listed[events[0].id] is None and listed[events[2].id] is None


class TestOffsets:
    def test_offsets_are_partition_and_offset_or_a_bare_offset(self) -> None:
        assert dlq.parse_refs(["2:15", "7"]) == [(2, 15), (None, 7)]
        with pytest.raises(ValueError, match="not an offset"):
            dlq.parse_refs(["x:1"])

    def test_topic_names_take_the_prefix_once(self, settings: Settings) -> None:
        name = "waymark.referrals.v1"
        assert dlq.topics_for(settings, name) == (
            settings.topic(name),
            settings.topic(name) + ".dlq",
        )
        assert dlq.topics_for(settings, settings.topic(name) + ".dlq") == (
            settings.topic(name),
            settings.topic(name) + ".dlq",
        )
