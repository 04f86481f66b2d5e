"""The first event end to end, through the real processes `waymark up` starts:
HTTP -> referral + outbox row -> relay -> Kafka -> bridge -> PatientJourney workflow."""

from __future__ import annotations

import json
import uuid

import httpx
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from shared.consumer import IdempotentConsumer
from shared.kafka_security import client_options
from shared.telemetry import setup_telemetry
from shared.temporal_client import connect as connect_temporal
from shared.topics import REFERRALS
from tests.conftest import auth
from tests.helpers import eventually, read_topic, referral_body, structured
from workflows.journeys import workflow_id
from workflows.journeys.bridge import Bridge
from workflows.journeys.workflows import PatientJourney


def _referral_id(record) -> str | None:  # type: ignore[no-untyped-def]
    """The referral id of a referral event; None for anything else on the topic (the poison
    tests in tests/faults put messages there that are not events at all)."""
    try:
        return json.loads(record.value)["data"]["referral_id"]
    except (ValueError, TypeError, KeyError):
        return None


async def _journey(client: Client, patient_id: str):  # type: ignore[no-untyped-def]
    try:
        return await client.get_workflow_handle(workflow_id(patient_id)).query(
            PatientJourney.journey
        )
    except Exception:  # noqa: BLE001 - not started yet
        return None


async def _post_referral_to_running_api(s) -> httpx.Response:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{s.api_port('referrals')}", timeout=10
    ) as http:
        return await http.post(
            "/referrals", json=referral_body(), headers=auth(s, role="clinician", org="GP-E2E")
        )


class TestFirstEventEndToEnd:
    async def test_a_referral_posted_over_http_appears_in_the_patients_journey(self, running_apps):
        s = running_apps
        resp = await _post_referral_to_running_api(s)
        assert resp.status_code == 201, resp.text
        referral = resp.json()
        client = await connect_temporal(s)

        async def shows_referral():  # type: ignore[no-untyped-def]
            view = await _journey(client, referral["patient_id"])
            return view if view and view.episodes else None

        view = await eventually(shows_referral, timeout=60)
        assert [(e.referral_id, e.current.state) for e in view.episodes] == [
            (referral["id"], "submitted")
        ]
        assert view.episodes[0].to_org == "PAIN-1"

    async def test_a_second_delivery_of_the_same_event_is_ignored_by_the_workflow(
        self, running_apps
    ):
        s = running_apps
        resp = await _post_referral_to_running_api(s)
        referral = resp.json()
        topic = s.topic(REFERRALS)
        records = await read_topic(
            s, topic, until=lambda rs: any(_referral_id(r) == referral["id"] for r in rs)
        )
        original = next(r for r in records if _referral_id(r) == referral["id"])
        # publish the very same event again, as a relay restarted mid-batch would
        producer = AIOKafkaProducer(**client_options(s), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                topic, value=original.value, key=original.key, headers=list(original.headers)
            )
        finally:
            await producer.stop()
        client = await connect_temporal(s)

        async def duplicate_seen():  # type: ignore[no-untyped-def]
            view = await _journey(client, referral["patient_id"])
            return view if view and view.duplicates_ignored >= 1 else None

        view = await eventually(duplicate_seen, timeout=60)
        assert view.events_applied == 1
        assert [st.event_type for st in view.episodes[0].steps] == ["uk.waymark.referral.submitted"]


class TestTracePropagation:
    async def test_one_trace_id_spans_the_http_request_the_relay_and_the_consumer(
        self, infra, referrals_client
    ):
        s = infra
        exporter = InMemorySpanExporter()
        setup_telemetry("tests", s, extra_processors=[SimpleSpanProcessor(exporter)])
        trace_id = uuid.uuid4().hex
        incoming = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
        resp = await referrals_client.post(
            "/referrals",
            json=referral_body(),
            headers={**auth(s, role="clinician", org="GP-TRACE"), "traceparent": incoming},
        )
        assert resp.status_code == 201, resp.text
        referral = resp.json()
        assert resp.headers["traceparent"].split("-")[1] == trace_id

        # the relay (this session's or a running one) publishes it; drive ours too
        from shared.outbox import OutboxRelay

        relay = OutboxRelay(settings=s, schema="referrals")
        await relay.start()
        try:
            await relay.publish_batch()
        finally:
            await relay.stop()
        records = await read_topic(
            s,
            s.topic(REFERRALS),
            until=lambda rs: any(_referral_id(r) == referral["id"] for r in rs),
        )
        record = next(r for r in records if _referral_id(r) == referral["id"])
        header = dict(record.headers)["traceparent"].decode()
        assert header.split("-")[1] == trace_id, "the Kafka message continues the HTTP trace"

        # the consumer side: the bridge handles the record inside a span of the same trace,
        # and the Temporal client call it makes is traced too
        client = await connect_temporal(s, interceptors=[TracingInterceptor()])
        consumer = IdempotentConsumer(
            name=s.topic("trace-test"),
            topics=[s.topic(REFERRALS)],
            handler=Bridge(client).handle,
            settings=s,
            sessions=None,
        )
        await consumer.dlq_producer.start()
        try:
            await consumer.process(record)
        finally:
            await consumer.dlq_producer.stop()
        spans = exporter.get_finished_spans()
        in_trace = [sp for sp in spans if format(sp.context.trace_id, "032x") == trace_id]
        names = {sp.name for sp in in_trace}
        assert any(n.startswith("POST /referrals") for n in names), names
        assert any(n.startswith("consume ") for n in names), names
        assert any("PatientJourney" in n for n in names), names  # the Temporal signal
        # the consumer span's parent is the producer span named in the Kafka header
        consume = next(sp for sp in in_trace if sp.name.startswith("consume "))
        assert format(consume.parent.span_id, "016x") == header.split("-")[2]


class TestAlertEndToEnd:
    async def test_a_re_referral_over_http_becomes_an_alert_in_the_read_model_and_on_the_topic(
        self, running_apps, journey_sessions
    ):
        from sqlalchemy import text

        from shared.db import unit_of_work
        from shared.topics import JOURNEYS
        from tests.helpers import synthetic_nhs_number

        s = running_apps
        patient = {
            "nhs_number": synthetic_nhs_number(),
            "given_name": "Alex",
            "family_name": "Synthetic-loop",
            "birth_date": "1980-01-01",
        }
        base = f"http://127.0.0.1:{s.api_port('referrals')}"
        gp = auth(s, role="clinician", org="GP-LOOP")
        pain = auth(s, role="service_staff", org="PAIN-1")
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            first = (
                await http.post("/referrals", json=referral_body(patient=patient), headers=gp)
            ).json()
            rejected = await http.post(
                f"/referrals/{first['id']}/reject",
                json={"reason_code": "does-not-meet-criteria"},
                headers={**pain, "If-Match": 'W/"1"'},
            )
            assert rejected.status_code == 200, rejected.text
            again = await http.post("/referrals", json=referral_body(patient=patient), headers=gp)
            assert again.status_code == 201, again.text
        patient_id = first["patient_id"]

        async def alert_row():  # type: ignore[no-untyped-def]
            async with unit_of_work(journey_sessions) as session:
                return (
                    await session.exec(
                        text(
                            "SELECT alert_id, rule, status, explanation FROM journey_alert "
                            "WHERE patient_id = :p"
                        ).bindparams(p=patient_id)
                    )
                ).first()

        row = await eventually(alert_row, timeout=60)
        assert row.rule == "looping.re_referral" and row.status == "open"
        assert "did not accept" in row.explanation
        records = await read_topic(
            s,
            s.topic(JOURNEYS),
            until=lambda rs: any(r.key == patient_id.encode() for r in rs),
            timeout=60,
        )
        alert_events = [json.loads(r.value) for r in records if r.key == patient_id.encode()]
        assert alert_events[0]["type"] == "uk.waymark.journey.alert.raised"
        assert alert_events[0]["data"]["rule"] == "looping.re_referral"
        assert first["id"] in alert_events[0]["data"]["referral_ids"]
        assert patient["nhs_number"] not in json.dumps(alert_events)

    async def test_a_phq9_safety_flag_from_the_care_plan_is_an_urgent_alert_at_once(
        self, running_apps, journey_sessions
    ):
        from aiokafka import AIOKafkaProducer
        from sqlalchemy import text

        from shared.db import unit_of_work
        from shared.events.care_plans import AssessmentRecorded
        from shared.events.envelope import make_event
        from shared.topics import CARE_PLANS

        s = running_apps
        patient_id = f"pt_safety_{uuid.uuid4().hex[:10]}"
        event = make_event(
            AssessmentRecorded(
                plan_id="plan-1",
                assessment_id=f"phq9-{uuid.uuid4().hex[:6]}",
                instrument="PHQ-9",
                total=8,
                band="mild",
                safety_flag=True,
            ),
            subject=patient_id,
        )
        producer = AIOKafkaProducer(**client_options(s), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(s.topic(CARE_PLANS), **structured(event))
        finally:
            await producer.stop()

        async def alert_row():  # type: ignore[no-untyped-def]
            async with unit_of_work(journey_sessions) as session:
                return (
                    await session.exec(
                        text(
                            "SELECT rule, severity, status FROM journey_alert WHERE patient_id = :p"
                        ).bindparams(p=patient_id)
                    )
                ).first()

        row = await eventually(alert_row, timeout=60)
        assert (row.rule, row.severity, row.status) == ("safety.phq9_item9", "urgent", "open")

        # a coordinator acknowledges it in the inbox: the action travels back as an event
        from shared.events.notifications import AlertActionTaken
        from shared.topics import NOTIFICATIONS

        alert_id = (await journey_row(journey_sessions, patient_id)).alert_id
        action = make_event(
            AlertActionTaken(alert_id=alert_id, action="acknowledge", actor="coord-e2e"),
            subject=patient_id,
        )
        producer = AIOKafkaProducer(**client_options(s), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(s.topic(NOTIFICATIONS), **structured(action))
        finally:
            await producer.stop()

        async def acknowledged():  # type: ignore[no-untyped-def]
            r = await journey_row(journey_sessions, patient_id)
            return r if r.status == "acknowledged" else None

        row = await eventually(acknowledged, timeout=60)
        assert row.assignee == "coord-e2e"


async def journey_row(sessions, patient_id: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from shared.db import unit_of_work

    async with unit_of_work(sessions) as session:
        return (
            await session.exec(
                text(
                    "SELECT alert_id, status, assignee FROM journey_alert WHERE patient_id = :p"
                ).bindparams(p=patient_id)
            )
        ).first()
