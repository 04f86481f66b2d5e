"""Small helpers the tests share: synthetic patients, reading and writing topics."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.kafka_security import client_options
from shared.settings import Settings

_NHS_BODIES = 1_000_000
_next_nhs_body = random.randrange(_NHS_BODIES)


def _nhs_check_digit(body: str) -> int:
    """Modulus 11 check digit of a 9-digit body (10 means the body is never issued)."""
    total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    return 0 if check == 11 else check


def synthetic_nhs_number(rng: random.Random | None = None) -> str:
    """A 10-digit number with a valid Modulus 11 check digit, in the 999 range that NHS
    England reserves for test data (never issued to a real person).

    With an ``rng`` the number is drawn from it (reproducible). Without one, numbers come from
    a sequence that starts at a random place and walks the million 999 bodies, so one test
    session never hands out the same number twice: a random draw from so small a range
    collides often enough across a few thousand referrals to make a test that counts one
    patient's events fail now and then."""
    global _next_nhs_body
    while True:
        if rng is not None:
            body = "999" + "".join(str(rng.randrange(10)) for _ in range(6))
        else:
            body = f"999{_next_nhs_body:06d}"
            _next_nhs_body = (_next_nhs_body + 1) % _NHS_BODIES
        check = _nhs_check_digit(body)
        if check != 10:
            return body + str(check)


def referral_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "patient": {
            "nhs_number": synthetic_nhs_number(),
            "given_name": "Alex",
            "family_name": f"Synthetic-{uuid.uuid4().hex[:6]}",
            "birth_date": "1972-03-04",
        },
        "source": "gp",
        "from_practitioner": "Dr Test",
        "to_org": "PAIN-1",
        "to_service_id": "svc-pain-mgmt",
        "reason_codes": ["279039007", "35489007"],
        "clinical_summary": "Low back pain for 8 months, low mood.",
        "priority": "routine",
        "consent_to_referral": True,
        "communication_needs": ["interpreter: Polish"],
    }
    body.update(overrides)
    return body


async def read_topic(
    s: Settings,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord]], bool],
    timeout: float = 30,
    from_offsets: dict[TopicPartition, int] | None = None,
) -> list[ConsumerRecord]:
    """Read a topic from the start (or given offsets) until `until(records)` holds."""
    consumer = AIOKafkaConsumer(
        **client_options(s),
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for p in (consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))
        ]
        consumer.assign(partitions)
        for tp in partitions:
            if from_offsets and tp in from_offsets:
                consumer.seek(tp, from_offsets[tp])
            else:
                await consumer.seek_to_beginning(tp)
        records: list[ConsumerRecord] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while not until(records):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"condition not met on {topic} within {timeout}s; read {len(records)} records"
                )
            for recs in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


def structured(event: Any) -> dict[str, Any]:
    """A CloudEvent as a Kafka message's value, key and headers, exactly as the relay writes
    it (the binding's structured mode): `producer.send(topic, **structured(event))`."""
    from shared.events.binding import event_bytes, kafka_headers

    return {
        "value": event_bytes(event.model_dump(mode="json")),
        "key": event.subject.encode(),
        "headers": kafka_headers(),
    }


async def publish(s: Settings, topic: str, event: Any) -> None:
    """One event (a CloudEvent) onto the instance's `topic`, keyed by its subject, as the
    owning service's relay publishes it."""
    producer = AIOKafkaProducer(**client_options(s), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(s.topic(topic), **structured(event))
    finally:
        await producer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh topic metadata
    return consumer.partitions_for_topic(topic) or set()


async def instance_topics(s: Settings) -> list[str]:
    """Every topic of the test instance (its prefix), the DLQs included."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options(s))
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(s.topic_prefix))
    finally:
        await admin.close()


async def end_offsets(s: Settings, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client_options(s), group_id=None)
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        return await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
    finally:
        await consumer.stop()


async def eventually(
    check: Callable[[], Any], *, timeout: float = 30, interval: float = 0.2
) -> Any:
    """Poll an async or sync check until it returns a truthy value (not a timing assertion:
    the deadline only stops a broken test from hanging)."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value {last!r})")


def send_case(
    case: Any, headers: dict[str, str], loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient
) -> httpx.Response:
    """Send a schemathesis case through an in-process client, on the session's loop, as
    httpx would send it (JSON, raw bytes or form data)."""
    kw = case.as_transport_kwargs(base_url=str(client.base_url), headers=headers)
    request: dict[str, Any] = {
        "method": kw["method"],
        "url": kw["url"],
        "headers": kw.get("headers"),
        "params": kw.get("params"),
    }
    if "json" in kw:
        request["json"] = kw["json"]
    elif isinstance(kw.get("data"), bytes | str):
        request["content"] = kw["data"]
    elif kw.get("data") is not None:
        request["data"] = kw["data"]
    return loop.run_until_complete(client.request(**request))


async def relate(
    s: Settings,
    nhs_number: str,
    org: str,
    *,
    to_org: str = "SVC-RELATE",
    registered_practice: str | None = None,
) -> str:
    """Give `org` a care relationship with the person as production does: a referral event
    from `org` applied by the care plans consumer's own handler (in the test database). For
    tests that start a care plan without waiting for a referral to travel through Kafka.
    Returns the person's pseudonymous id."""
    from services.care_plans.handlers.timeline import apply_referral_event
    from shared.db import make_engine, make_sessionmaker, unit_of_work
    from shared.events.envelope import make_event
    from shared.events.referrals import ReferralSubmitted
    from shared.pseudonym import pseudonymise

    patient_id = pseudonymise(nhs_number.replace(" ", ""), s)
    data = ReferralSubmitted(
        referral_id=str(uuid.uuid4()),
        from_org=org,
        to_org=to_org,
        to_service_id="svc-relate",
        service_category="msk_physiotherapy",
        priority="routine",
        state="submitted",
        registered_practice=registered_practice,
    )
    event = make_event(data, subject=patient_id)
    engine = make_engine(s, "care_plans")
    try:
        async with unit_of_work(make_sessionmaker(engine)) as session:
            await apply_referral_event(session=session, event=event, data=data)
    finally:
        await engine.dispose()
    return patient_id


async def create_care_plan(
    http: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], *, timeout: float = 30
) -> httpx.Response:
    """POST /care-plans once the caller's care relationship has arrived: a referral made a
    moment ago reaches the care plans service through Kafka, and until then it answers 403
    `no_relationship`. Returns the first other answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        r = await http.post("/care-plans", headers=headers, json=body)
        late = r.status_code == 403 and r.json().get("reason") == "no_relationship"
        if not late or loop.time() > deadline:
            return r
        await asyncio.sleep(0.2)


async def owner_ddl(s: Settings, schema: str, ddl: str) -> None:
    """Run a test's own DDL (a scratch table) as the migration owner, as a migration would: the
    runtime roles may not create tables, and the owner's default privileges give the schema's
    role read/write on what it makes."""
    from shared.db import connect

    conn = await connect(s, "owner", server_settings={"search_path": schema})
    try:
        await conn.execute(ddl)
    finally:
        await conn.close()


def process_token(s: Settings, service: str) -> str:
    """A Waymark process's client credentials token as the local provider issues it (the same
    claims: subject and client `waymark-<service>`, role service, organisation WAYMARK, the
    process's scopes), signed with the provider's key; the real grant is tested in
    tests/security/test_secrets.py and tests/shared/test_identity_provider.py."""
    from shared.access import PROCESS_SCOPES
    from shared.auth import mint_token

    client = f"waymark-{service.replace('_', '-')}"
    return mint_token(
        s,
        sub=client,
        client_id=client,
        roles=["service"],
        org="WAYMARK",
        ics=s.ics,
        name=f"Waymark {service}",
        scope=" ".join(c.value for c in PROCESS_SCOPES.get(service, ())),
    )


def fhir_media_mismatches(openapi: dict[str, Any]) -> list[tuple[str, str, str, set[str]]]:
    """Where an API's OpenAPI document says a FHIR route (under /fhir) answers or takes
    something other than application/fhir+json: (method, path, status or "body", media
    types). A 2xx must name FHIR JSON; an error may name it or nothing; a request body must
    offer it. The SMART configuration is plain JSON by its own standard."""
    fhir_json = "application/fhir+json"
    wrong = []
    for path, ops in openapi["paths"].items():
        if not path.startswith("/fhir") or path.endswith("smart-configuration"):
            continue
        for method, op in ops.items():
            for status, response in op["responses"].items():
                media = set(response.get("content", {}))
                if media != {fhir_json} and (status.startswith("2") or media):
                    wrong.append((method, path, status, media))
            body = set(op.get("requestBody", {}).get("content", {}))
            if body and fhir_json not in body:
                wrong.append((method, path, "body", body))
    return wrong
