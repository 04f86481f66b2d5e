"""The live alert stream (Server-Sent Events) and the inbox end to end.

- The fan-out on the real database: one LISTEN connection, a change read once and pushed to
  every subscriber of its ICS; a slow subscriber dropped while the others carry on; the
  listener killed by the server and reconnecting (subscribers told to resync).
- The route over a real HTTP server: `ready`, heartbeats, `?access_token=`, authorisation,
  and the subscription released when the client goes away.
- Against the running stack: a journey alert event produced to the journeys topic reaches an
  open dashboard, and so does its change after an acknowledge; a real PHQ-9 safety alert
  recorded through the care plans API travels to the inbox and the stream, is acknowledged,
  and the PatientJourney workflow and the inbox row both end up acknowledged.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.notifications.alerts import api as api_alerts
from services.notifications.alerts import live
from services.notifications.alerts.live import AlertChanged, AlertFanout, Subscription
from shared.db import make_engine, make_sessionmaker
from shared.kafka_security import client_options
from shared.settings import Settings
from shared.topics import JOURNEYS
from shared.web import create_app
from tests.helpers import eventually, relate, structured, synthetic_nhs_number
from tests.notifications.alert_support import (
    Sse,
    alert_event,
    coordinator,
    new_patient,
    put_alert,
    rows,
    sse_events,
)

WAIT = 90  # a deadline so a broken test fails instead of hanging; never a speed assertion


@pytest.fixture(scope="module")
async def notif_sessions(infra: Settings) -> AsyncIterator[async_sessionmaker]:
    engine = make_engine(infra, "notifications")
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def fanout(infra: Settings, notif_sessions: async_sessionmaker) -> AsyncIterator[AlertFanout]:
    f = AlertFanout(infra, notif_sessions)
    yield f
    await f.close()


async def next_alert(
    sub: Subscription, alert_id: str, *, version: int | None = None
) -> dict[str, Any]:
    """The next push of `alert_id` (other tests' alerts share the database and are skipped)."""

    async def wait() -> dict[str, Any]:
        while True:
            item = await sub.next()
            if (
                isinstance(item, AlertChanged)
                and item.alert["alert_id"] == alert_id
                and (version is None or item.alert["version"] == version)
            ):
                return item.alert

    return await asyncio.wait_for(wait(), WAIT)


class TestFanout:
    async def test_a_change_is_pushed_to_every_subscriber_of_its_ics_and_no_other(
        self, infra, fanout, notif_sessions
    ):
        a = await fanout.subscribe(infra.ics)
        b = await fanout.subscribe(infra.ics)
        elsewhere = await fanout.subscribe("ICS-ELSEWHERE")
        assert fanout.connections == 1  # one LISTEN connection, whatever the subscribers
        patient = new_patient()
        alert_id = await put_alert(
            infra, notif_sessions, patient_id=patient, kind="safety", severity="urgent"
        )
        got_a, got_b = await next_alert(a, alert_id), await next_alert(b, alert_id)
        assert got_a == got_b
        assert (got_a["patient_id"], got_a["status"], got_a["version"], got_a["kind"]) == (
            patient,
            "open",
            1,
            "safety",
        )
        # urgent: never snoozed (it would not reach the duty rota)
        assert got_a["allowed_actions"] == ["acknowledge", "assign", "resolve"]
        # the pump offers one change to every subscriber at once: by now `elsewhere` would
        # hold it if it were going to
        assert elsewhere.pending() == 0

    async def test_a_subscriber_that_falls_behind_is_dropped_and_the_others_carry_on(
        self, infra, fanout, notif_sessions
    ):
        slow = await fanout.subscribe(infra.ics, queue_size=2)
        fast = await fanout.subscribe(infra.ics)
        patient = new_patient()
        ids = [await put_alert(infra, notif_sessions, patient_id=patient) for _ in range(5)]
        for alert_id in ids:
            assert (await next_alert(fast, alert_id))["alert_id"] == alert_id
        assert slow.dropped and fanout.dropped >= 1
        assert await slow.next(0) is live.DROPPED  # its stream ends; the browser reconnects
        assert slow not in fanout._subs and fast in fanout._subs  # noqa: SLF001

    async def test_a_lost_listener_reconnects_and_subscribers_are_told_to_resync(
        self, infra, fanout, notif_sessions
    ):
        sub = await fanout.subscribe(infra.ics)
        pid = fanout.listener_pid()
        assert pid is not None
        # as the notifications role itself: a role may end its own backends, no other may
        role, password = infra.pg_credentials("notifications")
        conn = await asyncpg.connect(
            host=infra.pg_host,
            port=infra.pg_port,
            user=role,
            password=password,
            database=infra.db_name,
        )
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()

        async def resync() -> None:
            while (await sub.next()) is not live.RESYNC:
                pass

        await asyncio.wait_for(resync(), WAIT)
        assert fanout.connections == 2 and fanout.listener_pid() not in (None, pid)
        alert_id = await put_alert(infra, notif_sessions, patient_id=new_patient())
        assert (await next_alert(sub, alert_id))["version"] == 1


# --- the route over a real HTTP server --------------------------------------------------------


def _app(settings: Settings) -> FastAPI:
    app = create_app("notifications", title="alerts under test", description="", settings=settings)
    app.include_router(api_alerts.router)
    return app


@pytest.fixture(scope="module")
async def server(infra: Settings) -> AsyncIterator[tuple[str, FastAPI]]:
    """The alerts routes served by uvicorn in this process (a fresh app of their own), with
    heartbeats every 0.2 s so a test sees one soon."""
    app = _app(infra.model_copy(update={"alert_stream_heartbeat_seconds": 0.2}))
    srv = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(srv.serve())
    await eventually(lambda: srv.started, timeout=30, interval=0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    await task


async def first(events: AsyncIterator[Sse], pred: Callable[[Sse], bool]) -> Sse:
    async def wait() -> Sse:
        async for ev in events:
            if pred(ev):
                return ev
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(wait(), WAIT)


def is_alert(alert_id: str, version: int | None = None) -> Callable[[Sse], bool]:
    return lambda ev: (
        ev.event == "alert"
        and ev.data["alert_id"] == alert_id
        and (version is None or ev.data["version"] == version)
    )


class TestStreamRoute:
    async def test_ready_then_heartbeats_and_the_subscription_ends_with_the_client(
        self, infra, server
    ):
        base, app = server
        async with httpx.AsyncClient(base_url=base, timeout=WAIT) as http:
            async with http.stream("GET", "/alerts/stream", headers=coordinator(infra)) as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                assert resp.headers["cache-control"] == "no-cache"
                events = sse_events(resp)
                ready = await first(events, lambda ev: True)
                assert (ready.event, ready.data, ready.retry) == (
                    "ready",
                    {"ics": infra.ics},
                    api_alerts.RECONNECT_MS,
                )
                assert app.state.alert_fanout.subscribers == 1
                beat = await first(events, lambda ev: bool(ev.comments))
                assert beat.comments == ["heartbeat"] and beat.event is None
        # the client went away: its subscription is released
        await eventually(lambda: app.state.alert_fanout.subscribers == 0, timeout=WAIT)

    async def test_an_access_token_in_the_query_is_accepted_on_this_route(
        self, infra, server, notif_sessions
    ):
        base, _ = server
        token = coordinator(infra)["Authorization"].removeprefix("Bearer ")
        async with httpx.AsyncClient(base_url=base, timeout=WAIT) as http:
            async with http.stream("GET", "/alerts/stream", params={"access_token": token}) as resp:
                assert resp.status_code == 200
                events = sse_events(resp)
                assert (await first(events, lambda ev: True)).event == "ready"
                alert_id = await put_alert(infra, notif_sessions, patient_id=new_patient())
                ev = await first(events, is_alert(alert_id))
                assert ev.id == f"{alert_id}:1"
            # ... and only on this route
            r = await http.get("/alerts", params={"access_token": token})
            assert r.status_code == 401

    @pytest.mark.parametrize(
        ("kw", "status"),
        [
            ({"role": "clinician", "org": "GP-1"}, 403),
            ({"role": "partner", "org": "P-1"}, 403),
            ({"ics": "ICS-ELSEWHERE"}, 403),
            (None, 401),
        ],
    )
    async def test_who_may_not_stream(self, infra, server, kw, status):
        base, _ = server
        headers = coordinator(infra, **kw) if kw is not None else {}
        async with httpx.AsyncClient(base_url=base, timeout=WAIT) as http:
            r = await http.get("/alerts/stream", headers=headers)
            assert r.status_code == status
            assert r.headers["content-type"].startswith("application/problem+json")
            r = await http.get("/alerts/stream", params={"access_token": "not-a-token"})
            assert r.status_code == 401


# --- the running stack ------------------------------------------------------------------------


def api(s: Settings, service: str) -> str:
    return f"http://127.0.0.1:{s.api_port(service)}"


async def produce(s: Settings, topic: str, event: Any) -> None:
    producer = AIOKafkaProducer(**client_options(s), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, **structured(event))
    finally:
        await producer.stop()


class TestRunningNotificationsApi:
    async def test_a_new_alert_and_its_acknowledgement_reach_an_open_dashboard(
        self, running_apps, notif_sessions
    ):
        s = running_apps
        me = f"coord-{uuid.uuid4().hex[:6]}"
        h = coordinator(s, user=me)
        patient = new_patient()
        async with httpx.AsyncClient(base_url=api(s, "notifications"), timeout=WAIT) as http:
            async with http.stream("GET", "/alerts/stream", headers=h) as resp:
                assert resp.status_code == 200
                events = sse_events(resp)
                assert (await first(events, lambda ev: True)).event == "ready"
                # the journey raises an alert: its event goes through the stack's consumer
                event, data = alert_event(patient_id=patient, kind="looping", severity="high")
                await produce(s, s.topic(JOURNEYS), event)
                raised = await first(events, is_alert(data.alert_id))
                assert raised.id == f"{data.alert_id}:1"
                assert (raised.data["patient_id"], raised.data["status"], raised.data["rule"]) == (
                    patient,
                    "open",
                    "looping.re_referral",
                )
                # a coordinator acknowledges it elsewhere: the change follows
                r = await http.post(
                    f"/alerts/{data.alert_id}/acknowledge", headers=coordinator(s, user=me)
                )
                assert r.status_code == 200, r.text
                changed = await first(events, is_alert(data.alert_id, 2))
                assert changed.id == f"{data.alert_id}:2"
                assert (changed.data["status"], changed.data["assignee"]) == ("acknowledged", me)
        audit = await rows(
            notif_sessions,
            "SELECT detail FROM audit_log WHERE actor = :u AND "
            "resource_id = :a AND detail LIKE 'stream%'",
            u=me,
            a=data.alert_id,
        )
        assert sorted(a.detail for a in audit) == ["stream v1", "stream v2"]


class TestRealSafetyAlertEndToEnd:
    async def test_a_phq9_item9_answer_is_an_alert_acknowledged_back_into_the_journey(
        self, running_apps, notif_sessions
    ):
        from shared.temporal_client import connect as connect_temporal
        from tests.care_plans.support import phq9, plan_content
        from workflows.journeys import workflow_id
        from workflows.journeys.workflows import PatientJourney

        s = running_apps
        me = f"coord-{uuid.uuid4().hex[:6]}"
        h = coordinator(s, user=me)
        gp = {
            "Authorization": coordinator(s, role="clinician", org="GP-E2E-ALERT")["Authorization"]
        }
        async with (
            httpx.AsyncClient(base_url=api(s, "notifications"), timeout=WAIT) as http,
            httpx.AsyncClient(base_url=api(s, "care_plans"), timeout=WAIT) as plans,
        ):
            async with http.stream("GET", "/alerts/stream", headers=h) as resp:
                events = sse_events(resp)
                assert (await first(events, lambda ev: True)).event == "ready"
                # a person with a care plan answers PHQ-9 item 9 above 0
                nhs = synthetic_nhs_number()
                await relate(s, nhs, "GP-E2E-ALERT")  # the GP's referral: its relationship
                plan = await plans.post(
                    "/care-plans",
                    headers=gp,
                    json={
                        "nhs_number": nhs,
                        "content": plan_content(),
                        "consented_organisations": [],
                        "reason": "first conversation",
                    },
                )
                assert plan.status_code == 201, plan.text
                patient = plan.json()["patient_id"]
                assessed = await plans.post(
                    f"/care-plans/{plan.json()['id']}/assessments",
                    headers=gp,
                    json={"instrument": "PHQ-9", "answers": phq9(12, 2)},
                )
                assert assessed.status_code == 201, assessed.text
                assert assessed.json()["safety_flag"] is True
                # care plans -> Kafka -> bridge -> PatientJourney -> journeys topic -> inbox
                raised = await first(
                    events, lambda ev: ev.event == "alert" and ev.data["patient_id"] == patient
                )
                alert = raised.data
                assert (alert["kind"], alert["rule"], alert["severity"], alert["status"]) == (
                    "safety",
                    "safety.phq9_item9",
                    "urgent",
                    "open",
                )
                listed = await http.get("/alerts", params={"patient_id": patient}, headers=h)
                assert [a["alert_id"] for a in listed.json()["items"]] == [alert["alert_id"]]
                one = await http.get(f"/alerts/{alert['alert_id']}", headers=h)
                assert one.status_code == 200
                assert one.json()["explanation_unavailable"] is None
                assert "PHQ-9" in one.json()["explanation"]
                assert "item 9" in one.json()["explanation"]
                assert one.json()["evidence"][0]["state"] == "assessed"

                acked = await http.post(
                    f"/alerts/{alert['alert_id']}/acknowledge",
                    headers={**h, "If-Match": one.headers["etag"]},
                )
                assert acked.status_code == 200, acked.text
                assert acked.json()["status"] == "acknowledged"
                # the stream says so at once (version 2)
                changed = await first(
                    events,
                    lambda ev: ev.event == "alert" and ev.data["alert_id"] == alert["alert_id"],
                )
                assert (changed.id, changed.data["status"], changed.data["assignee"]) == (
                    f"{alert['alert_id']}:2",
                    "acknowledged",
                    me,
                )

                # the journey hears it and confirms it with its own event (seq 2): not news
                # to the coordinator, so the row's version (their ETag) stays at 2
                async def confirmed() -> Any:
                    [row] = await rows(
                        notif_sessions,
                        "SELECT seq, version FROM alert WHERE alert_id = :a",
                        a=alert["alert_id"],
                    )
                    return row if row.seq == 2 else None

                assert (await eventually(confirmed, timeout=WAIT)).version == 2
        client = await connect_temporal(s)
        view = await client.get_workflow_handle(workflow_id(patient)).query(PatientJourney.journey)
        [wf_alert] = [a for a in view.alerts if a.alert_id == alert["alert_id"]]
        assert (wf_alert.status, wf_alert.assignee, wf_alert.seq) == ("acknowledged", me, 2)
        [row] = await rows(
            notif_sessions,
            "SELECT status, seq, acknowledged_at FROM alert WHERE alert_id = :a",
            a=alert["alert_id"],
        )
        assert (row.status, row.seq) == ("acknowledged", 2)
        assert row.acknowledged_at <= datetime.now(UTC)
        # one row per action: the journey's echo confirms the coordinator's (its seq)
        hist = await rows(
            notif_sessions,
            "SELECT change, actor, seq FROM alert_history WHERE alert_id = :a ORDER BY id",
            a=alert["alert_id"],
        )
        assert [tuple(x) for x in hist] == [("raised", "journey", 1), ("acknowledged", me, 2)]
