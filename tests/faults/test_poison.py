"""Poison events on the running stack: every kind of bad message reaches `<topic>.dlq` with
its reason, from every consuming process that reads the topic, while the good events around it
are applied — the stream goes on.

Kinds: not JSON; JSON but not a CloudEvent; a known type with a schema version that does not
exist (`.v99`); an unknown type; data that does not match its type's model; and a message
over `event_max_bytes` (a valid event padded past the limit: only the size check stops it).

The consuming processes are the ones `waymark up` starts (the `running_apps` fixture), reading
the real topics of the test instance: referrals-consumer, care-plans-consumer,
notifications-consumer and journeys-bridge. Each topic gets its own run of messages on one
partition: good event 0, poison 1, good event 1, ... poison 6, good event 6, where poison i
has the key of good event i, so every consumer — the bridge too, which works on a partition's
patients side by side — takes good event i only after it has dealt with poison i.

The junk is made of markers and codes: no personal data (tests/zz_privacy scans it later).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from services.care_plans.consumers import CONSUMER_NAME as CARE_PLANS_CONSUMER
from services.notifications.consumers import CONSUMER_NAME as NOTIFICATIONS_CONSUMER
from services.notifications.consumers import TOPICS as NOTIFICATIONS_TOPICS
from services.referrals.consumers import CONSUMER_NAME as REFERRALS_CONSUMER
from shared.events.binding import kafka_headers
from shared.events.care_plans import AssessmentRecorded
from shared.events.directory import ServicePublished
from shared.events.encounters import EncounterRecorded
from shared.events.envelope import CloudEvent, make_event
from shared.events.journeys import ALERT_EVENTS
from shared.events.notifications import AlertActionTaken
from shared.events.referrals import SYNTHETIC_SOURCE, ReferralSubmitted
from shared.kafka_security import client_options
from shared.outbox import event_bytes
from shared.settings import Settings
from shared.temporal_client import connect as connect_temporal
from shared.topics import CARE_PLANS, DIRECTORY, ENCOUNTERS, JOURNEYS, NOTIFICATIONS, REFERRALS
from tests.cloudevents_support import MALFORMED_ON_PURPOSE
from tests.helpers import end_offsets, eventually, read_topic
from workflows.journeys import workflow_id
from workflows.journeys.bridge import CONSUMER_NAME as BRIDGE_CONSUMER
from workflows.journeys.workflows import PatientJourney

pytestmark = pytest.mark.stack

GOOD_EVENTS = 7  # one before the first poison, one after each

#: the consuming processes of the stack: (process, consumer group name)
CARE_PLANS_PROC = ("care-plans-consumer", CARE_PLANS_CONSUMER)
NOTIFICATIONS_PROC = ("notifications-consumer", NOTIFICATIONS_CONSUMER)
REFERRALS_PROC = ("referrals-consumer", REFERRALS_CONSUMER)
BRIDGE_PROC = ("journeys-bridge", BRIDGE_CONSUMER)
#: who reads each topic (the consumers' own modules say the same; checked below)
READERS: dict[str, list[tuple[str, str]]] = {
    REFERRALS: [CARE_PLANS_PROC, NOTIFICATIONS_PROC, BRIDGE_PROC],
    DIRECTORY: [REFERRALS_PROC, NOTIFICATIONS_PROC],
    CARE_PLANS: [NOTIFICATIONS_PROC, BRIDGE_PROC],
    NOTIFICATIONS: [BRIDGE_PROC],
    JOURNEYS: [NOTIFICATIONS_PROC],
    ENCOUNTERS: [NOTIFICATIONS_PROC, BRIDGE_PROC],
}

#: each kind of poison and what its dlq.reason must say
REASONS = {
    "not-json": "not JSON",
    "not-a-cloudevent": "not a CloudEvent",
    "unknown-schema-version": "unknown schema version v99",
    "unknown-type": "unknown event type",
    "data-not-matching": "data does not match",
    "oversized": "oversized: ",
}


def _good_event(topic: str, marker: str, i: int) -> CloudEvent:
    """A well-formed event of the topic, for a patient (or service) of its own."""
    patient = f"pt_poison{marker}{i}"
    if topic == REFERRALS:
        event = make_event(
            ReferralSubmitted(
                referral_id=f"ref-poison-{marker}-{i}",
                from_org="GP-POISON",
                to_org="PAIN-1",
                to_service_id="svc-pain-mgmt",
                service_category="pain_management_programme",
                reason_codes=["279039007"],
                priority="routine",
                state="submitted",
            ),
            subject=patient,
        )
        # a made-up referral: nobody is messaged about it
        return event.model_copy(update={"source": SYNTHETIC_SOURCE})
    if topic == DIRECTORY:
        service = f"svc-poison-{marker}-{i}"
        return make_event(
            ServicePublished(
                service_id=service,
                organization_id=f"org-poison-{marker}",
                org_code="POISON-1",
                category="peer_support",
                status="active",
            ),
            subject=service,
        )
    if topic == CARE_PLANS:
        return make_event(
            AssessmentRecorded(
                plan_id=f"plan-poison-{marker}-{i}",
                assessment_id=f"asm-poison-{marker}-{i}",
                instrument="GAD-7",
                total=3,
                band="minimal",
            ),
            subject=patient,
        )
    if topic == NOTIFICATIONS:
        return make_event(
            AlertActionTaken(
                alert_id=f"alert-poison-{marker}-{i}", action="acknowledge", actor="user-poison"
            ),
            subject=patient,
        )
    if topic == ENCOUNTERS:
        # a planned GP appointment that took place: counted by no alert rule
        at = datetime.now(UTC) - timedelta(days=2)
        return make_event(
            EncounterRecorded(
                encounter_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"poison-{marker}-{i}")),
                revision=1,
                contact_kind="gp_appointment",
                planned=True,
                status="finished",
                started_at=at,
                ended_at=at + timedelta(minutes=15),
                source_org="A81001",
                source_system="poison-test",
                channel="bulk",
            ),
            subject=patient,
        )
    assert topic == JOURNEYS
    return make_event(
        ALERT_EVENTS["resolved"](
            alert_id=f"alert-poison-{marker}-{i}",
            kind="stalled",
            rule="not_triaged",
            severity="medium",
            status="resolved",
            seq=1,
        ),
        subject=patient,
    )


def _poison(kind: str, template: CloudEvent, marker: str, settings: Settings) -> bytes:
    """A message of the given kind, made from a well-formed event with an id and subject of
    its own (so, had it been applied, it would show)."""
    raw: dict[str, Any] = template.model_dump(mode="json")
    raw["id"] = f"poison-{kind}-{marker}"
    raw["subject"] = f"pt_poisoned{marker}{list(REASONS).index(kind)}"
    if kind == "not-json":
        return f"\x00poison {kind} {marker} {{".encode()
    if kind == "not-a-cloudevent":
        return json.dumps({"poison": kind, "marker": marker, "hello": [1, 2, 3]}).encode()
    if kind == "unknown-schema-version":
        raw["dataschema"] = raw["dataschema"].replace(".v1.json", ".v99.json")
        assert raw["dataschema"].endswith(".v99.json")
    elif kind == "unknown-type":
        raw["type"] = "uk.waymark.poison.unknown-type"
    elif kind == "data-not-matching":
        raw["data"] = dict(raw["data"], unexpected_field="poison")
    elif kind == "oversized":
        # a valid event but for its size: padding in an envelope extension attribute, which
        # the envelope accepts; only the size check keeps it out
        raw["padding"] = "x" * (settings.event_max_bytes + 40 * 1024)
    else:
        raise AssertionError(kind)
    return event_bytes(raw)


@dataclass
class TopicRun:
    topic: str  # with the instance's prefix
    logical: str
    partition: int
    good: list[CloudEvent]
    poison: dict[str, bytes]  # kind -> value
    poison_ids: dict[str, str] = field(default_factory=dict)  # kind -> event id, if it has one
    poison_offsets: dict[int, str] = field(default_factory=dict)  # offset -> kind
    dlq_since: dict[TopicPartition, int] = field(default_factory=dict)


async def _publish(settings: Settings, logical: str, marker: str) -> TopicRun:
    topic = settings.topic(logical)
    good = [_good_event(logical, marker, i) for i in range(GOOD_EVENTS)]
    poison = {kind: _poison(kind, good[0], marker, settings) for kind in REASONS}
    partition = int(marker, 16) % 6
    run = TopicRun(
        topic=topic,
        logical=logical,
        partition=partition,
        good=good,
        poison=poison,
        dlq_since=await end_offsets(settings, f"{topic}.dlq"),
    )
    for kind, value in poison.items():
        try:
            run.poison_ids[kind] = json.loads(value)["id"]
        except (ValueError, KeyError):
            pass
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:

        async def send(value: bytes, key: str, *, malformed: bool = False) -> int:
            # the binding's headers; poison marked as malformed on purpose (for the session's
            # CloudEvents check, tests/zz_standards)
            headers = kafka_headers([(MALFORMED_ON_PURPOSE, b"1")] if malformed else [])
            meta = await producer.send_and_wait(
                topic, value=value, key=key.encode(), partition=partition, headers=headers
            )
            return meta.offset

        await send(event_bytes(good[0].model_dump(mode="json")), good[0].subject)
        for i, (kind, value) in enumerate(poison.items(), start=1):
            run.poison_offsets[await send(value, good[i].subject, malformed=True)] = kind
            await send(event_bytes(good[i].model_dump(mode="json")), good[i].subject)
    finally:
        await producer.stop()
    return run


# --- what each consumer did -----------------------------------------------------------------


async def _one(conn: asyncpg.Connection, sql: str, *args: object) -> bool:
    return await conn.fetchval(f"SELECT EXISTS ({sql})", *args)


async def _journey_events(client: Client, patient_id: str) -> int | None:
    """Events the patient's journey applied; None when there is no such workflow."""
    try:
        view = await client.get_workflow_handle(workflow_id(patient_id)).query(
            PatientJourney.journey
        )
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND,):
            return None
        raise
    return view.events_applied


def _effect_check(
    settings: Settings, conn: asyncpg.Connection, client: Client, topic: str, process: str
) -> Callable[[CloudEvent], Awaitable[bool]]:
    """How to see that `process` applied a good event of `topic`."""
    group = settings.topic(dict(READERS[topic])[process])

    async def inbox(schema: str, event: CloudEvent) -> bool:
        return await _one(
            conn, f"SELECT 1 FROM {schema}.inbox WHERE consumer=$1 AND event_id=$2", group, event.id
        )

    async def check(event: CloudEvent) -> bool:
        if process == "journeys-bridge":
            return (await _journey_events(client, event.subject) or 0) >= 1
        if process == "care-plans-consumer":
            return await _one(
                conn, "SELECT 1 FROM care_plans.timeline_entry WHERE event_id=$1", event.id
            )
        if process == "referrals-consumer":
            return await _one(
                conn, "SELECT 1 FROM referrals.directory_service WHERE service_id=$1", event.subject
            )
        assert process == "notifications-consumer"
        if topic == REFERRALS:
            return await _one(
                conn, "SELECT 1 FROM notifications.referral_history WHERE event_id=$1", event.id
            )
        if topic == JOURNEYS:
            return await _one(
                conn, "SELECT 1 FROM notifications.alert WHERE alert_id=$1", event.data["alert_id"]
            )
        return await inbox("notifications", event)

    return check


SCHEMA_OF = {
    "care-plans-consumer": "care_plans",
    "notifications-consumer": "notifications",
    "referrals-consumer": "referrals",
}


class TestPoisonOnTheRunningStack:
    def test_the_readers_are_the_consumers_own_topics(self) -> None:
        assert {t for t, readers in READERS.items() if NOTIFICATIONS_PROC in readers} == set(
            NOTIFICATIONS_TOPICS
        )
        assert {t for t, readers in READERS.items() if BRIDGE_PROC in readers} == {
            REFERRALS,
            CARE_PLANS,
            NOTIFICATIONS,
            ENCOUNTERS,
        }

    async def test_every_kind_of_poison_is_dead_lettered_by_every_reader_and_the_stream_goes_on(
        self, running_apps: Settings
    ) -> None:
        s = running_apps
        marker = uuid.uuid4().hex[:10]
        runs = [await _publish(s, logical, marker) for logical in READERS]
        oversized = {r.topic: len(r.poison["oversized"]) for r in runs}
        assert all(n > s.event_max_bytes for n in oversized.values())

        conn = await asyncpg.connect(
            host=s.pg_host,
            port=s.pg_port,
            user=s.pg_user,
            password=s.pg_credentials("owner")[1],
            database=s.db_name,
        )
        client = await connect_temporal(s)
        try:
            # 1. the stream goes on: every good event, the ones after each poison included,
            # is applied by every consuming process that reads its topic
            checks = {
                (r.topic, proc): _effect_check(s, conn, client, r.logical, proc)
                for r in runs
                for proc, _ in READERS[r.logical]
            }

            async def missing() -> list[str]:
                out = []
                for r in runs:
                    for proc, _ in READERS[r.logical]:
                        for i, ev in enumerate(r.good):
                            if not await checks[(r.topic, proc)](ev):
                                out.append(f"{proc} on {r.logical}: good event {i}")
                return out

            async def all_applied() -> bool:
                return not await missing()

            try:
                await eventually(all_applied, timeout=180, interval=1)
            except AssertionError:
                raise AssertionError(f"not applied: {await missing()}") from None

            # 2. every poison reached the DLQ of its topic, once from each reader, with the
            # reason of its kind, the original bytes, and where it came from
            table: Counter[tuple[str, str]] = Counter()
            for r in runs:
                readers = {s.topic(group): proc for proc, group in READERS[r.logical]}
                wanted = {(kind, group) for kind in REASONS for group in readers}

                def mine(records: list[Any], r: TopicRun = r) -> dict[tuple[str, str], Any]:
                    found: dict[tuple[str, str], Any] = {}
                    for rec in records:
                        h = dict(rec.headers)
                        if (
                            h.get("dlq.original.topic") != r.topic.encode()
                            or int(h.get("dlq.original.partition", b"-1")) != r.partition
                        ):
                            continue
                        kind = r.poison_offsets.get(int(h["dlq.original.offset"]))
                        if kind is not None:
                            found.setdefault((kind, h["dlq.consumer"].decode()), rec)
                    return found

                dead = mine(
                    await read_topic(
                        s,
                        f"{r.topic}.dlq",
                        from_offsets=r.dlq_since,
                        timeout=120,
                        until=lambda recs, wanted=wanted, mine=mine: wanted <= set(mine(recs)),
                    )
                )
                assert set(dead) == wanted, f"{r.logical}: {sorted(set(dead) ^ wanted)}"
                for (kind, group), rec in dead.items():
                    h = dict(rec.headers)
                    reason = h["dlq.reason"].decode()
                    assert REASONS[kind] in reason, (r.logical, kind, group, reason)
                    assert rec.value == r.poison[kind], (r.logical, kind, group)
                    assert h["dlq.attempts"] == b"1", "retrying cannot mend a poison message"
                    assert h["dlq.original.topic"] == r.topic.encode()
                    table[(kind, readers[group])] += 1
                oversize_reason = dict(
                    dead[("oversized", s.topic(READERS[r.logical][0][1]))].headers
                )["dlq.reason"].decode()
                assert oversize_reason == (
                    f"oversized: {len(r.poison['oversized'])} bytes > limit {s.event_max_bytes}"
                )

            # 3. and none of the poison had an effect anywhere
            for r in runs:
                for proc, group in READERS[r.logical]:
                    for kind, event_id in r.poison_ids.items():
                        if proc == "journeys-bridge":
                            subject = json.loads(r.poison[kind])["subject"]
                            assert await _journey_events(client, subject) is None, (r.logical, kind)
                        else:
                            assert not await _one(
                                conn,
                                f"SELECT 1 FROM {SCHEMA_OF[proc]}.inbox WHERE "
                                "consumer=$1 AND event_id=$2",
                                s.topic(group),
                                event_id,
                            ), (proc, r.logical, kind)
        finally:
            await conn.close()

        procs = sorted({p for readers in READERS.values() for p, _ in readers})
        pairs = sum(len(v) for v in READERS.values())
        print(
            f"\npoison dead-lettered (kind x consuming process, summed over the "
            f"{len(READERS)} topics; {pairs} topic-reader pairs):"
        )
        print(f"{'kind':<24}" + "".join(f"{p:>24}" for p in procs))
        for kind in REASONS:
            print(f"{kind:<24}" + "".join(f"{table[(kind, p)]:>24}" for p in procs))
        print(
            f"total {sum(table.values())} dead letters "
            f"({len(REASONS)} kinds x {pairs} pairs = {len(REASONS) * pairs}); "
            f"good events applied after the poison: {GOOD_EVENTS * pairs} "
            f"({GOOD_EVENTS} per topic-reader pair); oversized messages "
            f"{min(oversized.values())}-{max(oversized.values())} bytes, limit "
            f"{s.event_max_bytes}"
        )
        assert sum(table.values()) == len(REASONS) * pairs
        assert set(table) == {(k, p) for k in REASONS for p in procs}
