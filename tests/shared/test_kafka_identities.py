"""The real broker enforces the principals' table: SCRAM-SHA-512 for every client, and ACLs
that let a principal write only its own topic (and the dead letters of what it reads), read
only what it consumes, in its own consumer groups.

Runs on a scratch instance of its own (its own topic prefix, topics and ACLs, made by the same
code as `waymark up` and removed afterwards), so its records and group joins never reach the
test stack's running consumers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from devtools import stack
from shared.kafka_principals import PRINCIPALS, principal
from shared.kafka_security import client_options
from shared.settings import Settings
from shared.topics import CARE_PLANS, DIRECTORY, REFERRALS, all_topics, dlq, ensure_topics


@pytest.fixture(scope="module")
async def scratch(infra: Settings) -> AsyncIterator[Settings]:
    run = uuid.uuid4().hex[:6]
    s = infra.model_copy(update={"instance": f"acl-{run}", "topic_prefix": f"acl{run}."})
    await ensure_topics(s)
    await stack.ensure_instance_acls(s)
    try:
        yield s
    finally:
        await stack.drop_instance_acls(s)
        admin = AIOKafkaAdminClient(**client_options(s))
        await admin.start()
        try:
            await admin.delete_topics([s.topic(t.name) for t in all_topics()])
        finally:
            await admin.close()


def as_(s: Settings, who: str) -> Settings:
    """The settings a process of principal `who` runs with (its own password file)."""
    return s.model_copy(update={"kafka_sasl_username": who})


async def _started(client):  # type: ignore[no-untyped-def]
    await client.start()
    return client


class TestAuthentication:
    async def test_a_client_without_credentials_is_refused(self, infra):
        plain = infra.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
        producer = AIOKafkaProducer(**client_options(plain), request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            await producer.start()
        await producer.stop()

    async def test_a_wrong_password_is_refused(self, infra):
        options = client_options(as_(infra, "referrals"))
        options["sasl_plain_password"] = "not-" + options["sasl_plain_password"]
        producer = AIOKafkaProducer(**options, request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            await producer.start()
        await producer.stop()


class TestWhatReferralsMayNotDo:
    async def test_writing_another_services_topic_is_refused(self, scratch):
        producer = await _started(
            AIOKafkaProducer(**client_options(as_(scratch, "referrals")), acks="all")
        )
        try:
            for topic in (CARE_PLANS, dlq(CARE_PLANS)):  # nor a DLQ of what it does not read
                with pytest.raises(TopicAuthorizationFailedError):
                    await producer.send_and_wait(scratch.topic(topic), b"{}")
        finally:
            await producer.stop()

    async def test_reading_a_topic_it_does_not_consume_is_refused(self, scratch):
        # its own topic: it may describe and write it, but it does not consume it
        consumer = AIOKafkaConsumer(
            **client_options(as_(scratch, "referrals")), group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tp = TopicPartition(scratch.topic(REFERRALS), 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            with pytest.raises(TopicAuthorizationFailedError):
                await asyncio.wait_for(consumer.getmany(tp, timeout_ms=5000), 30)
        finally:
            await consumer.stop()

    async def test_topics_of_others_are_not_even_visible(self, scratch):
        admin = await _started(AIOKafkaAdminClient(**client_options(as_(scratch, "referrals"))))
        try:
            mine = {t for t in await admin.list_topics() if t.startswith(scratch.topic_prefix)}
        finally:
            await admin.close()
        p = principal("referrals")
        assert mine == {scratch.topic(t) for t in (*p.writes, *p.reads)}
        assert scratch.topic(CARE_PLANS) not in mine

    async def test_another_principals_consumer_group_is_refused(self, scratch):
        consumer = AIOKafkaConsumer(
            **client_options(as_(scratch, "referrals")),
            group_id=scratch.topic("notifications"),
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            consumer.subscribe([scratch.topic(DIRECTORY)])
            with pytest.raises(GroupAuthorizationFailedError):
                await asyncio.wait_for(consumer.getmany(timeout_ms=5000), 30)
        finally:
            await consumer.stop()


class TestEveryPrincipalDoesItsJob:
    async def test_each_writes_its_topics_and_dead_letters_and_reads_what_it_consumes(
        self, scratch
    ):
        marker = uuid.uuid4().hex.encode()
        for p in PRINCIPALS:
            producer = await _started(
                AIOKafkaProducer(
                    **client_options(as_(scratch, p.name)), acks="all", enable_idempotence=True
                )
            )
            try:
                for topic in p.writes:
                    await producer.send_and_wait(scratch.topic(topic), marker, key=b"k")
            finally:
                await producer.stop()
        for p in PRINCIPALS:
            if not p.reads:
                continue
            consumer = AIOKafkaConsumer(
                *(scratch.topic(t) for t in p.reads),
                **client_options(as_(scratch, p.name)),
                group_id=scratch.topic(p.groups[0]),
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            try:
                seen: set[str] = set()
                deadline = asyncio.get_running_loop().time() + 60
                while seen != {scratch.topic(t) for t in p.reads}:
                    assert asyncio.get_running_loop().time() < deadline, (p.name, seen)
                    for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                        if any(r.value == marker for r in records):
                            seen.add(tp.topic)
                await consumer.commit()  # its group is its own
            finally:
                await consumer.stop()
        assert principal("referrals").reads == (DIRECTORY,)
        assert REFERRALS in principal("referrals").writes
