"""Faults: while a steady stream of referrals and their transitions is driven over HTTP, the
parts of a private Waymark stack (tests/faults/fault_stack.py) are killed with SIGKILL and
started again, the Kafka broker is killed, PostgreSQL is stopped in immediate mode, and a
consumer is frozen past its group session timeout so its partitions move to another member.

Afterwards everything is checked against what the API acknowledged: every acknowledged change
has exactly one event (duplicate copies on the topic only where Kafka's at-least-once allows,
and then absorbed by the consumers' inboxes), every consumer's effect happened once, every
patient's journey workflow holds each of their events once, every stall alert exists once, and
every partner delivery is accepted under one delivery identity.

The client behaves as the API asks clients to: each write carries an Idempotency-Key and is
retried with the same key when the connection breaks or a 5xx comes back; sometimes a response
is "lost" and the same request is sent again on purpose.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from shared.auth import mint_token
from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings
from shared.temporal_client import connect as connect_temporal
from shared.topics import REFERRALS
from tests.conftest import publish_directory_state
from tests.faults.fault_stack import (
    FaultLog,
    fault_stack,  # noqa: F401 - a fixture
    kill9_and_restart,
    kill9_kafka,
    pause_past_session_timeout,
    restart_postgres,
    start_extra,
)
from tests.helpers import eventually, read_topic, referral_body
from tests.notifications.webhook_support import Receiver, receiver  # noqa: F401 - a fixture
from workflows.journeys import workflow_id

pytestmark = pytest.mark.stack

GP_ORG = "GP-FAULTS"
PAIN = ("svc-pain-mgmt", "PAIN-1", "pain_management_programme", "active")
#: a service of the test-only category that tests/dashboard/fast_triage_rules.toml gives a
#: one-minute triage deadline: referrals left untriaged there raise one stall alert each
FAST = ("svc-fast-triage-faults", "FAST-1", "test_fast_triage", "active")
REFERRAL_TYPES = [
    f"uk.waymark.referral.{t}"
    for t in ("submitted", "accepted", "booked", "attended", "discharged")
]
#: the path of a routine referral, as (action, body); creation is the first change
LIFECYCLE: list[tuple[str, dict[str, Any]]] = [
    ("accept", {}),
    ("book", {"appointment_at": None}),  # filled in per referral
    ("attend", {}),
    ("discharge", {"reason_code": "treatment-completed"}),
]


# --- the client that drives the stream -----------------------------------------------------------


@dataclass(frozen=True)
class Change:
    referral_id: str
    patient_id: str
    state: str
    version: int


@dataclass
class Driver:
    fs: Settings
    gp_token: str
    pain_token: str
    fast_every: int = 7  # every n-th referral goes to the fast-triage service and waits there
    acked: list[Change] = field(default_factory=list)
    fast_patients: set[str] = field(default_factory=set)
    retried: Counter[str] = field(default_factory=Counter)  # why a request was sent again
    replays: int = 0  # "lost" responses: the same request sent again on purpose
    failures: list[str] = field(default_factory=list)  # any answer the client could not accept
    requests: int = 0
    #: seconds each client waits after an acknowledged write: keeps the stream steady and
    #: bounded (~25 writes/s from 6 clients), so the whole check fits in CI
    pause: float = 0.2
    rng: random.Random = field(default_factory=lambda: random.Random(9))

    async def send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        token: str,
        *,
        body: dict[str, Any],
        key: str,
        if_match: str | None = None,
        expect: int,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        if if_match:
            headers["If-Match"] = if_match
        deadline = time.monotonic() + 180
        while True:
            self.requests += 1
            try:
                r = await client.request(method, path, json=body, headers=headers)
            except httpx.TransportError as exc:
                why = type(exc).__name__
            else:
                if r.status_code == expect:
                    await asyncio.sleep(self.pause)
                    return r
                if r.status_code not in (502, 503, 504):
                    # a 4xx is a wrong answer to a good request; a 500 is a bug, even mid-fault
                    # (a database away is a 503 the client is asked to retry)
                    raise AssertionError(f"{method} {path} answered {r.status_code}: {r.text}")
                why = f"HTTP {r.status_code}"
            self.retried[why] += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} not acknowledged within 180 s ({why})")
            await asyncio.sleep(0.3)

    async def one_referral(self, client: httpx.AsyncClient, n: int) -> None:
        fast = n % self.fast_every == 0
        svc, org = (FAST if fast else PAIN)[:2]
        body = referral_body(to_service_id=svc, to_org=org)
        r = await self.send(
            client,
            "POST",
            "/referrals",
            self.gp_token,
            body=body,
            key=str(uuid.uuid4()),
            expect=201,
        )
        ref = r.json()
        self.acked.append(Change(ref["id"], ref["patient_id"], ref["state"], ref["version"]))
        if fast:
            self.fast_patients.add(ref["patient_id"])
            return
        etag = r.headers["ETag"]
        for action, template in LIFECYCLE:
            cmd = dict(template)
            if "appointment_at" in cmd:
                cmd["appointment_at"] = (datetime.now(UTC) + timedelta(days=9)).isoformat()
            key = str(uuid.uuid4())
            r = await self.send(
                client,
                "POST",
                f"/referrals/{ref['id']}/{action}",
                self.pain_token,
                body=cmd,
                key=key,
                if_match=etag,
                expect=200,
            )
            if self.rng.random() < 0.1:  # the response was "lost": the client asks again
                again = await self.send(
                    client,
                    "POST",
                    f"/referrals/{ref['id']}/{action}",
                    self.pain_token,
                    body=cmd,
                    key=key,
                    if_match=etag,
                    expect=200,
                )
                self.replays += 1
                assert again.json()["version"] == r.json()["version"], "a replay changed it"
            out = r.json()
            self.acked.append(Change(out["id"], out["patient_id"], out["state"], out["version"]))
            etag = r.headers["ETag"]

    async def user(self, client: httpx.AsyncClient, stop: asyncio.Event, u: int) -> None:
        n = u
        while not stop.is_set():
            await self.one_referral(client, n)
            n += 10


@pytest.fixture(scope="module")
async def driven(fault_stack: Settings) -> AsyncIterator[tuple[Settings, Driver]]:  # noqa: F811
    fs = fault_stack
    engine = make_engine(fs, "referrals")
    await publish_directory_state(fs, make_sessionmaker(engine), [PAIN, FAST])
    await engine.dispose()
    driver = Driver(
        fs,
        gp_token=mint_token(fs, sub="gp-faults", roles=["clinician"], org=GP_ORG),
        pain_token=mint_token(fs, sub="pain-faults", roles=["clinician"], org=PAIN[1]),
    )
    yield fs, driver


async def inject_faults(fs: Settings, log: FaultLog) -> None:
    """Every fault the issue names, one after another, with the stream running throughout."""
    await asyncio.sleep(4)
    for names in [
        ("referrals-api",),
        ("referrals-relay",),
        ("notifications-consumer",),
        ("care-plans-consumer",),
        ("journeys-bridge",),
        ("journeys-worker",),
        ("notifications-dispatcher",),
        (
            "referrals-consumer",
            "directory-relay",
            "care-plans-relay",
            "notifications-relay",
            "journeys-relay",
        ),
        ("directory-api", "care-plans-api", "notifications-api"),
    ]:
        await kill9_and_restart(fs, log, *names)
        await asyncio.sleep(2)
    await kill9_kafka(fs, log)
    await asyncio.sleep(4)
    await restart_postgres(fs, log)
    await asyncio.sleep(4)
    # a second member of the notifications consumer group, then freeze the first past the
    # session timeout: the group rebalances, the frozen member wakes up owning nothing
    start_extra(fs, "notifications-consumer")
    log.add("started", "a second notifications-consumer (the group rebalances)")
    await asyncio.sleep(8)
    await pause_past_session_timeout(fs, log, "notifications-consumer", seconds=40)
    await asyncio.sleep(5)


# --- the checks ---------------------------------------------------------------------------------


async def _pg(fs: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=fs.pg_host,
        port=fs.pg_port,
        user=fs.pg_user,
        password=fs.pg_credentials("owner")[1],
        database=fs.db_name,
    )


async def _count_by_event(
    conn: asyncpg.Connection, sql: str, ids: list[str], *args: object
) -> Counter[str]:
    return Counter(r[0] for r in await conn.fetch(sql, ids, *args))


class TestFaults:
    async def test_nothing_lost_nothing_twice_under_faults(
        self,
        driven: tuple[Settings, Driver],
        receiver: Receiver,  # noqa: F811
    ) -> None:
        fs, driver = driven
        hook = receiver.hook("faults-pain", PAIN[1])
        async with httpx.AsyncClient(base_url=fs.api_url("notifications"), timeout=30) as api:
            r = await api.post(
                "/webhook-subscriptions",
                json={"url": receiver.url("faults-pain"), "event_types": REFERRAL_TYPES},
                headers={
                    "Authorization": "Bearer "
                    + mint_token(fs, sub="partner-faults", roles=["partner"], org=PAIN[1])
                },
            )
        assert r.status_code == 201, r.text
        hook.secrets = [r.json()["secret"]]

        # --- drive the stream and inject the faults ---
        log = FaultLog()
        stop = asyncio.Event()
        print(f"\nfaults stack: {fs.home}; driving 6 clients")
        async with httpx.AsyncClient(base_url=fs.api_url("referrals"), timeout=10) as client:
            users = [asyncio.create_task(driver.user(client, stop, u)) for u in range(6)]
            try:
                await inject_faults(fs, log)
            finally:
                stop.set()
                results = await asyncio.gather(*users, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"the client could not get changes acknowledged: {errors!r}"
        acked = driver.acked
        referral_ids = {c.referral_id for c in acked}
        print(
            f"driven: {len(referral_ids)} referrals, {len(acked)} acknowledged changes, "
            f"{driver.requests} requests, retried {dict(driver.retried)}, "
            f"{driver.replays} deliberate replays"
        )
        assert len(referral_ids) >= 30 and driver.fast_patients, "the stream was too thin"

        # --- 1. every acknowledged change: exactly one event on the topic ---
        wanted = {(c.referral_id, c.state) for c in acked}

        def topic_has_all(records: list[Any]) -> bool:
            seen = {
                (r.value["data"]["referral_id"], r.value["data"]["state"])
                for r in records
                if r.value.get("data", {}).get("referral_id") in referral_ids
            }
            return wanted <= seen

        records = await read_topic(
            fs, fs.topic(REFERRALS), until=_json_until(topic_has_all), timeout=240
        )
        ours = [
            r
            for r in (_json(x) for x in records)
            if r.get("data", {}).get("referral_id") in referral_ids
        ]
        copies = Counter(e["id"] for e in ours)
        ids_per_change: dict[tuple[str, str], set[str]] = defaultdict(set)
        for e in ours:
            ids_per_change[(e["data"]["referral_id"], e["data"]["state"])].add(e["id"])
        lost = wanted - ids_per_change.keys()
        doubled = {k: v for k, v in ids_per_change.items() if len(v) > 1}
        unasked = ids_per_change.keys() - wanted
        event_ids = sorted(copies)
        topic_dups = sum(n - 1 for n in copies.values())
        assert not lost, f"acknowledged but never published: {sorted(lost)[:5]}"
        assert not doubled, f"one change, several events: {list(doubled.items())[:3]}"
        assert not unasked, f"published but never acknowledged: {sorted(unasked)[:5]}"
        assert len(event_ids) == len(acked)

        conn = await _pg(fs)
        try:
            # the referrals service applied each change once, with the event it published
            applied = await conn.fetch(
                "SELECT event_id FROM referrals.referral_transition "
                "WHERE referral_id::text = ANY($1::text[])",
                list(referral_ids),
            )
            assert sorted(r[0] for r in applied) == event_ids
            unsent = await conn.fetchval(
                "SELECT count(*) FROM referrals.outbox WHERE sent_at IS NULL"
            )
            assert unsent == 0

            # --- 2. every consumer's effect once (inbox), none missing ---
            async def inbox(schema: str) -> Counter[str]:
                return await _count_by_event(
                    conn,
                    f"SELECT event_id FROM {schema}.inbox WHERE event_id = ANY($1::text[])",
                    event_ids,
                )

            for schema in ("care_plans", "notifications"):
                counts = await eventually(
                    lambda s=schema: _complete(inbox(s), event_ids), timeout=180, interval=1
                )
                assert set(counts.values()) == {1}, f"{schema}: an event applied twice"
            history = await _count_by_event(
                conn,
                "SELECT event_id FROM notifications.referral_history "
                "WHERE event_id = ANY($1::text[])",
                event_ids,
            )
            assert sorted(history) == event_ids
            messages = await conn.fetch(
                "SELECT event_id, audience, count(*) AS n FROM notifications.message "
                "WHERE event_id = ANY($1::text[]) GROUP BY 1, 2",
                event_ids,
            )
            assert messages and all(m["n"] == 1 for m in messages), "a message made twice"
            sent_twice = await conn.fetchval(
                "SELECT count(*) FROM (SELECT d.message_id, d.recipient "
                "FROM notifications.message_delivery d JOIN notifications.message m "
                "ON m.id = d.message_id WHERE m.event_id = ANY($1::text[]) AND "
                "d.status = 'sent' GROUP BY 1, 2 HAVING count(*) > 1) twice",
                event_ids,
            )
            assert sent_twice == 0, "a message sent twice to one recipient"

            # --- 3. partner deliveries: one per event, accepted under one identity ---
            # (a set: a change whose event the relay published twice is still one event)
            pain_events = sorted({e["id"] for e in ours if e["data"]["to_org"] == PAIN[1]})
            deliveries = await _count_by_event(
                conn,
                "SELECT event_id FROM notifications.webhook_delivery "
                "WHERE event_id = ANY($1::text[])",
                pain_events,
            )
            assert sorted(deliveries) == pain_events and set(deliveries.values()) == {1}
        finally:
            await conn.close()
        await eventually(
            lambda: {g.payload["id"] for g in hook.accepted()} >= set(pain_events),
            timeout=240,
            interval=1,
        )
        identities: dict[str, set[str]] = defaultdict(set)
        for g in hook.accepted():
            identities[g.payload["id"]].add(g.webhook_id)
        assert all(len(v) == 1 for v in identities.values()), "one event, two deliveries"
        assert all(g.verified_by for g in hook.got), "a delivery with a bad signature"
        assert not hook.strangers(), "the partner received another organisation's event"
        partner_repeats = len(hook.accepted()) - len(identities)

        # --- 4. every journey holds each of its events once; one stall alert per waiting
        #        referral, in the workflow and in the coordinators' inbox ---
        per_patient = Counter(c.patient_id for c in acked)
        client = await connect_temporal(fs)

        async def journeys_complete() -> dict[str, dict[str, Any]] | None:
            views = {}
            for patient, n in per_patient.items():
                try:
                    view = await client.get_workflow_handle(workflow_id(patient)).query("journey")
                except Exception:  # noqa: BLE001 - not started yet, or the worker restarting
                    return None
                if view["events_applied"] != n:
                    return None
                if patient in driver.fast_patients and not view["alerts"]:
                    return None
                views[patient] = view
            return views

        views = await eventually(journeys_complete, timeout=240, interval=2)
        journey_dups = sum(v["duplicates_ignored"] for v in views.values())
        for patient in driver.fast_patients:
            stalls = [a for a in views[patient]["alerts"] if a["kind"] == "stalled"]
            assert len(stalls) == 1, f"{patient}: {len(stalls)} stall alerts"
        for patient in set(per_patient) - driver.fast_patients:
            assert views[patient]["alerts"] == [], f"{patient}: an alert nobody earned"
        conn = await _pg(fs)
        try:

            async def alert_rows() -> Counter[str] | None:
                rows = await conn.fetch(
                    "SELECT patient_id FROM notifications.alert WHERE patient_id = ANY($1::text[])",
                    list(per_patient),
                )
                got = Counter(r[0] for r in rows)
                return got if set(got) >= driver.fast_patients else None

            alerts = await eventually(alert_rows, timeout=120, interval=1)
            assert set(alerts) == driver.fast_patients and set(alerts.values()) == {1}
        finally:
            await conn.close()

        faults = [
            i for i in log.injected if i.name in ("kill -9", "SIGSTOP") or "stopped" in i.name
        ]
        killed = sum(len(i.detail.split(", ")) for i in faults if i.name == "kill -9")
        print(
            f"faults injected: {len(faults)} ({killed} processes killed with SIGKILL in "
            f"{sum(i.name == 'kill -9' for i in faults)} rounds, the broker among them; "
            f"PostgreSQL restarted; a consumer frozen past its session timeout)"
        )
        print(
            f"acknowledged changes {len(acked)}; events published {len(event_ids)} "
            f"({len(records)} records read, {topic_dups} duplicate copies on the topic); "
            f"consumed once each by care plans, notifications and the journeys; "
            f"journey duplicates absorbed {journey_dups}; partner repeats of an accepted "
            f"delivery {partner_repeats}; stall alerts {len(alerts)} for "
            f"{len(driver.fast_patients)} waiting referrals; lost 0"
        )


def _json(record: Any) -> dict[str, Any]:
    import json

    try:
        value = json.loads(record.value)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _json_until(check: Any) -> Any:
    """read_topic's `until`, over records whose values are parsed as JSON (poison skipped)."""

    class _R:
        def __init__(self, value: dict[str, Any]) -> None:
            self.value = value

    return lambda records: check([_R(_json(r)) for r in records])


async def _complete(counts: Any, ids: list[str]) -> Counter[str] | None:
    got = await counts
    return got if len(got) == len(ids) else None
