"""The referrals service's directory consumer (services/referrals/consumers.py) through the real
Kafka and PostgreSQL: directory CloudEvents are produced to the directory topic and the
consumer runs in-process, in a consumer group of its own for each run.

The consumer's name (its inbox key) is the production one, so a second group re-reading the
topic is what a consumer that lost its offsets would do: the inbox must make it a no-op.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.referrals.consumers import CONSUMER_NAME, build_consumer
from shared.events.binding import kafka_headers
from shared.events.directory import (
    DirectoryServiceEventData,
    ServicePublished,
    ServiceUpdated,
    ServiceWithdrawn,
)
from shared.events.envelope import CloudEvent, make_event
from shared.events.referrals import ReferralSubmitted
from shared.kafka_security import client_options
from shared.outbox import OutboxRelay, event_bytes
from shared.settings import Settings
from shared.topics import DIRECTORY, REFERRALS
from tests.cloudevents_support import MALFORMED_ON_PURPOSE
from tests.conftest import auth, publish_directory_state
from tests.helpers import end_offsets, eventually, read_topic, referral_body
from tests.referrals.support import (
    ALL_STATES,
    OPEN_STATES,
    Parties,
    Service,
    assert_event_matches_its_schema,
    assert_no_personal_data,
    drive_to,
    events_of,
    new_ics,
    new_org,
    new_service,
    new_user,
    personal_data,
    query,
    referral_row,
)


def directory_event(
    kind: type[DirectoryServiceEventData],
    svc: Service,
    *,
    status: str | None = None,
    category: str | None = None,
    time: datetime | None = None,
    **extra: Any,
) -> CloudEvent:
    data = kind(
        service_id=svc.id,
        organization_id=f"org-{svc.org}",
        org_code=svc.org,
        category=category or svc.category,
        status=status or svc.status,
        conditions=["persistent_pain"],
        **extra,
    )
    return make_event(data, subject=svc.id, time=time)


def as_bytes(event: CloudEvent) -> bytes:
    return event_bytes(event.model_dump(mode="json"))


async def produce(
    s: Settings, messages: list[tuple[str, bytes]], *, malformed: bool = False
) -> None:
    """Send (key, value) messages to the directory topic, in order, acknowledged by all, with
    the binding's headers (and the test's mark when they are malformed on purpose)."""
    headers = kafka_headers([(MALFORMED_ON_PURPOSE, b"1")] if malformed else [])
    producer = AIOKafkaProducer(**client_options(s), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(
                s.topic(DIRECTORY), value=value, key=key.encode(), headers=headers
            )
    finally:
        await producer.stop()


async def directory_offsets(s: Settings) -> dict[TopicPartition, int]:
    """Where the directory topic ends now: a test's own messages come after this."""
    return await end_offsets(s, s.topic(DIRECTORY))


async def _group_starts_at(s: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit `offsets` for a new group, so its consumer reads only what came after them."""
    c = AIOKafkaConsumer(**client_options(s), group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        c.assign(list(offsets))
        await c.commit(dict(offsets))
    finally:
        await c.stop()


async def consume_all(
    s: Settings, sessions: async_sessionmaker, *, since: dict[TopicPartition, int] | None = None
) -> None:
    """Run the directory consumer in a group of its own until it has committed everything on
    the directory topic as it stands now: from `since` on, or (without it) from the start,
    including what earlier tests and runs left there."""
    topic = s.topic(DIRECTORY)
    targets = await end_offsets(s, topic)
    group = f"{s.topic(CONSUMER_NAME)}-test-{uuid.uuid4().hex[:10]}"
    if since is not None:
        await _group_starts_at(s, group, since)
    consumer = build_consumer(s, sessions, group_id=group)
    stop = asyncio.Event()
    await consumer.start()
    task = asyncio.create_task(consumer.run(stop))

    async def caught_up() -> bool:
        for tp, end in targets.items():
            if end and ((await consumer.consumer.committed(tp)) or 0) < end:
                return False
        return True

    try:
        await eventually(caught_up, timeout=60)
    finally:
        stop.set()
        await task
        await consumer.stop()


async def replica(sessions: async_sessionmaker, service_id: str) -> Any:
    rows = await query(
        sessions, "SELECT * FROM directory_service WHERE service_id = :s", s=service_id
    )
    return rows[0] if rows else None


async def inbox_has(s: Settings, sessions: async_sessionmaker, event_id: str) -> bool:
    rows = await query(
        sessions,
        "SELECT 1 FROM inbox WHERE consumer = :c AND event_id = :e",
        c=s.topic(CONSUMER_NAME),
        e=event_id,
    )
    return len(rows) == 1


def _parties(svc: Service) -> Parties:
    return Parties(
        ics=new_ics(),
        referrer_org=new_org("GP"),
        referrer_user=new_user(),
        service=svc,
        receiver_user=new_user(),
    )


class TestServicePublished:
    async def test_a_published_service_enters_the_replica_and_takes_referrals(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        svc = Service(
            id=f"svc-{uuid.uuid4().hex[:12]}", org=new_org("PEER"), category="peer_support"
        )
        event = directory_event(ServicePublished, svc, self_referral=True, waiting_weeks=3)
        since = await directory_offsets(settings)
        await produce(settings, [(svc.id, as_bytes(event))])
        await consume_all(settings, referrals_sessions, since=since)

        row = await replica(referrals_sessions, svc.id)
        assert row is not None
        assert (row.org_code, row.category, row.status, row.self_referral) == (
            svc.org,
            "peer_support",
            "active",
            True,
        )
        assert row.as_of == event.time
        assert await inbox_has(settings, referrals_sessions, event.id)

        r = await referrals_client.post(
            "/referrals",
            json=referral_body(to_service_id=svc.id, to_org=None),
            headers=auth(settings, role="clinician", org=new_org()),
        )
        assert r.status_code == 201, r.text
        assert (r.json()["to_org"], r.json()["service_category"]) == (svc.org, "peer_support")

    async def test_an_update_changes_what_new_referrals_get(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        svc = Service(
            id=f"svc-{uuid.uuid4().hex[:12]}", org=new_org("PT"), category="msk_physiotherapy"
        )
        t = datetime.now(UTC)
        since = await directory_offsets(settings)
        await produce(
            settings,
            [
                (svc.id, as_bytes(directory_event(ServicePublished, svc, time=t))),
                (
                    svc.id,
                    as_bytes(
                        directory_event(
                            ServiceUpdated,
                            svc,
                            status="temporarily closed",
                            time=t + timedelta(seconds=1),
                        )
                    ),
                ),
            ],
        )
        await consume_all(settings, referrals_sessions, since=since)
        assert (await replica(referrals_sessions, svc.id)).status == "temporarily closed"
        r = await referrals_client.post(
            "/referrals",
            json=referral_body(to_service_id=svc.id, to_org=svc.org),
            headers=auth(settings, role="clinician", org=new_org()),
        )
        assert r.status_code == 422, r.text


class TestServiceWithdrawn:
    async def test_withdrawal_flags_the_open_referrals_once_each_and_publishes_it(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        svc = await new_service(settings, referrals_sessions)
        sibling = await new_service(settings, referrals_sessions, org=svc.org)
        parties, sibling_parties = _parties(svc), _parties(sibling)
        referrals = {
            state: await drive_to(referrals_client, settings, parties, state)
            for state in ALL_STATES
        }
        untouched = await drive_to(referrals_client, settings, sibling_parties, "submitted")
        referrals_offsets = await end_offsets(settings, settings.topic(REFERRALS))

        withdrawn = directory_event(
            ServiceWithdrawn, svc, status="inactive", reason="commissioning ended"
        )
        again_later = directory_event(
            ServiceWithdrawn, svc, status="defunct", time=withdrawn.time + timedelta(seconds=5)
        )
        # the first withdrawal twice: what a relay restart after publishing does
        since = await directory_offsets(settings)
        await produce(
            settings,
            [
                (svc.id, as_bytes(withdrawn)),
                (svc.id, as_bytes(withdrawn)),
                (svc.id, as_bytes(again_later)),
            ],
        )
        await consume_all(settings, referrals_sessions, since=since)

        flagged_ids = set()
        for state, before in referrals.items():
            row = await referral_row(referrals_sessions, before["id"])
            flagged = [
                e
                for e in await events_of(referrals_sessions, before["id"])
                if e.event_type == "uk.waymark.referral.flagged"
            ]
            assert row.state == state, "a flag does not change the state"
            if state in OPEN_STATES:
                flagged_ids.add(before["id"])
                assert row.flags == ["service_withdrawn"], state
                assert row.version == before["version"] + 1
                assert len(flagged) == 1, (state, len(flagged))
                ev = flagged[0]
                assert ev.key == before["patient_id"]
                assert ev.topic == settings.topic(REFERRALS)
                data = ev.payload["data"]
                assert (data["referral_id"], data["flag"], data["state"]) == (
                    before["id"],
                    "service_withdrawn",
                    state,
                )
                assert (data["to_service_id"], data["from_org"]) == (svc.id, parties.referrer_org)
                assert_event_matches_its_schema(ev.payload)
                assert_no_personal_data(ev.payload, *personal_data(before))
            else:
                assert (row.flags, row.version) == ([], before["version"]), state
                assert flagged == []
        other = await referral_row(referrals_sessions, untouched["id"])
        assert (other.flags, other.version) == ([], untouched["version"])
        assert (await replica(referrals_sessions, svc.id)).status == "defunct"

        # the referrer sees what needs acting on
        r = await referrals_client.get(
            "/referrals", params={"flagged": "true"}, headers=parties.referrer(settings)
        )
        assert {x["id"] for x in r.json()} == flagged_ids
        assert all(x["flags"] == ["service_withdrawn"] for x in r.json())
        # and the service takes no new referral
        r = await referrals_client.post(
            "/referrals",
            json=referral_body(to_service_id=svc.id, to_org=svc.org),
            headers=parties.referrer(settings),
        )
        assert r.status_code == 422

        # a consumer that lost its offsets re-reads the topic: nothing is flagged twice
        await consume_all(settings, referrals_sessions)
        for rid in flagged_ids:
            events = await events_of(referrals_sessions, rid)
            assert [e.event_type for e in events].count("uk.waymark.referral.flagged") == 1

        # the relay publishes the flags to the referrals topic, one per referral
        relay = OutboxRelay(settings=settings, schema="referrals")
        await relay.start()
        try:
            while await relay.publish_batch():
                pass
        finally:
            await relay.stop()

        def flags_seen(records: list[Any]) -> list[str]:
            return [
                json.loads(r.value)["data"]["referral_id"]
                for r in records
                if json.loads(r.value)["type"] == "uk.waymark.referral.flagged"
                and json.loads(r.value)["data"]["referral_id"] in flagged_ids
            ]

        records = await read_topic(
            settings,
            settings.topic(REFERRALS),
            from_offsets=referrals_offsets,
            until=lambda recs: set(flags_seen(recs)) == flagged_ids,
        )
        assert sorted(flags_seen(records)) == sorted(flagged_ids)

    async def test_an_older_event_does_not_overwrite_a_newer_replica_row(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        svc = await new_service(settings, referrals_sessions)
        parties = _parties(svc)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        stored = (await replica(referrals_sessions, svc.id)).as_of

        newer = directory_event(
            ServiceUpdated,
            svc,
            category="pain_management_group",
            time=stored + timedelta(minutes=1),
        )
        stale_update = directory_event(
            ServiceUpdated, svc, status="inactive", time=stored + timedelta(seconds=30)
        )
        stale_withdrawal = directory_event(
            ServiceWithdrawn, svc, status="defunct", time=stored - timedelta(hours=1)
        )
        since = await directory_offsets(settings)
        await produce(
            settings,
            [
                (svc.id, as_bytes(newer)),
                (svc.id, as_bytes(stale_update)),
                (svc.id, as_bytes(stale_withdrawal)),
            ],
        )
        await consume_all(settings, referrals_sessions, since=since)

        row = await replica(referrals_sessions, svc.id)
        assert (row.status, row.category, row.as_of) == (
            "active",
            "pain_management_group",
            newer.time,
        )
        # every one of them was consumed (and recorded), the stale ones without effect
        for ev in (newer, stale_update, stale_withdrawal):
            assert await inbox_has(settings, referrals_sessions, ev.id)
        after = await referral_row(referrals_sessions, referral["id"])
        assert (after.flags, after.version) == ([], referral["version"])
        assert [e.event_type for e in await events_of(referrals_sessions, referral["id"])] == [
            "uk.waymark.referral.submitted"
        ]

    async def test_a_service_withdrawn_and_published_again_takes_referrals_again(
        self,
        referrals_client: httpx.AsyncClient,
        referrals_sessions: async_sessionmaker,
        settings: Settings,
    ) -> None:
        svc = await new_service(settings, referrals_sessions)
        t = datetime.now(UTC) + timedelta(seconds=1)
        since = await directory_offsets(settings)
        await produce(
            settings,
            [
                (
                    svc.id,
                    as_bytes(directory_event(ServiceWithdrawn, svc, status="inactive", time=t)),
                ),
                (
                    svc.id,
                    as_bytes(
                        directory_event(
                            ServicePublished, svc, status="active", time=t + timedelta(seconds=1)
                        )
                    ),
                ),
            ],
        )
        await consume_all(settings, referrals_sessions, since=since)
        assert (await replica(referrals_sessions, svc.id)).status == "active"
        referral = await drive_to(referrals_client, settings, _parties(svc), "submitted")
        assert referral["flags"] == []


class TestMalformedEvents:
    async def test_malformed_directory_events_go_to_the_dlq_and_the_rest_is_applied(
        self, referrals_sessions: async_sessionmaker, settings: Settings
    ) -> None:
        marker = uuid.uuid4().hex[:10]
        good = Service(id=f"svc-good-{marker}", org=new_org("OK"), category="peer_support")
        bad = Service(id=f"svc-bad-{marker}", org=new_org("BAD"), category="peer_support")

        not_json = b"\x00not json " + marker.encode()
        broken_data = directory_event(ServicePublished, bad).model_dump(mode="json")
        broken_data["data"]["org_code"] = "not an org code!"
        wrong_type = make_event(
            ReferralSubmitted(
                referral_id=str(uuid.uuid4()),
                from_org="GP-1",
                to_org="PAIN-1",
                to_service_id=bad.id,
                service_category="pain",
                reason_codes=["279039007"],
                priority="routine",
                state="submitted",
            ),
            subject=f"pt_{marker}",
        )
        unknown_type = dict(
            directory_event(ServicePublished, bad).model_dump(mode="json"),
            type="uk.waymark.directory.service.teleported",
        )
        good_event = directory_event(ServicePublished, good)
        key = f"key-{marker}"  # one partition, so the good event comes after the bad ones
        since = await directory_offsets(settings)
        dlq = f"{settings.topic(DIRECTORY)}.dlq"
        dlq_since = await end_offsets(settings, dlq)
        await produce(
            settings,
            [
                (key, not_json),
                (key, event_bytes(broken_data)),
                (key, as_bytes(wrong_type)),
                (key, event_bytes(unknown_type)),
                (key, as_bytes(good_event)),
            ],
            malformed=True,
        )
        await consume_all(settings, referrals_sessions, since=since)

        assert (await replica(referrals_sessions, good.id)).status == "active"
        assert await replica(referrals_sessions, bad.id) is None

        def mine(records: list[Any]) -> list[Any]:
            # one record per original message, dead-lettered by this consumer: when the
            # stack runs (the end-to-end tests start it), its referrals-consumer and the
            # notifications consumer read the same topic and dead-letter the same messages
            unique = {}
            for r in records:
                if (
                    r.key == key.encode()
                    and dict(r.headers).get("dlq.consumer")
                    == settings.topic(CONSUMER_NAME).encode()
                ):
                    h = dict(r.headers)
                    unique.setdefault((h["dlq.original.partition"], h["dlq.original.offset"]), r)
            return list(unique.values())

        dead = mine(
            await read_topic(
                settings, dlq, from_offsets=dlq_since, until=lambda rs: len(mine(rs)) >= 4
            )
        )
        assert len(dead) == 4
        by_value = {r.value: dict(r.headers) for r in dead}
        assert set(by_value) == {
            not_json,
            event_bytes(broken_data),
            as_bytes(wrong_type),
            event_bytes(unknown_type),
        }
        assert b"not JSON" in by_value[not_json]["dlq.reason"]
        assert b"org_code" in by_value[event_bytes(broken_data)]["dlq.reason"]
        assert b"not a directory service event" in by_value[as_bytes(wrong_type)]["dlq.reason"]
        assert b"unknown" in by_value[event_bytes(unknown_type)]["dlq.reason"].lower()
        for headers in by_value.values():
            assert headers["dlq.consumer"] == settings.topic(CONSUMER_NAME).encode()
            assert headers["dlq.original.topic"] == settings.topic(DIRECTORY).encode()
            assert headers["dlq.attempts"] == b"1"  # retrying cannot fix any of them

    async def test_the_fixture_helper_and_the_consumer_agree(
        self, referrals_sessions: async_sessionmaker, settings: Settings
    ) -> None:
        """publish_directory_state (used by the API tests) calls the consumer's handler; the
        consumer must store the same row for the same facts."""
        a = Service(id=f"svc-{uuid.uuid4().hex[:12]}", org=new_org("HLP"), category="yoga")
        b = Service(id=f"svc-{uuid.uuid4().hex[:12]}", org=a.org, category="yoga")
        await publish_directory_state(
            settings, referrals_sessions, [(a.id, a.org, a.category, "active")]
        )
        since = await directory_offsets(settings)
        await produce(settings, [(b.id, as_bytes(directory_event(ServicePublished, b)))])
        await consume_all(settings, referrals_sessions, since=since)
        ra, rb = await replica(referrals_sessions, a.id), await replica(referrals_sessions, b.id)
        assert (ra.org_code, ra.category, ra.status, ra.self_referral) == (
            rb.org_code,
            rb.category,
            rb.status,
            rb.self_referral,
        )
