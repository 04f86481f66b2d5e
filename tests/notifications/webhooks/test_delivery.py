"""Partner webhooks end to end through the real processes (`running_apps`): a referral made
over HTTP -> outbox -> Kafka -> notifications consumer -> webhook delivery -> the stack's
dispatcher -> a real HTTP receiver (uvicorn, in this process) that verifies every request's
signature with the Standard Webhooks reference library.

The stack runs with the test retry settings (tests/conftest.py): retries after 0.3, 0.6,
1.2, 2.4, 4.8, 9.6 s (+ up to 20% jitter), disabled after failing for 20 s, 3 s timeout."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from shared.db import unit_of_work
from shared.events.binding import HTTP_CONTENT_TYPE
from shared.events.envelope import make_event
from shared.events.referrals import ReferralSubmitted
from shared.settings import Settings
from tests.conftest import auth
from tests.helpers import eventually, referral_body
from tests.notifications.webhook_support import Got, Hook, Receiver

SUBMITTED = "uk.waymark.referral.submitted"
RETRIES = [0.3, 0.6, 1.2]


def _org() -> str:
    return f"P-{uuid.uuid4().hex[:10]}"


# --- the stack's APIs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def api(running_apps: Settings) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{running_apps.api_port('notifications')}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        yield c


async def subscribe(
    api: httpx.AsyncClient,
    s: Settings,
    rec: Receiver,
    name: str,
    org: str,
    event_types: list[str] | None = None,
    **hook_kw: Any,
) -> tuple[dict[str, Any], Hook]:
    hook = rec.hook(name, org, **hook_kw)
    r = await api.post(
        "/webhook-subscriptions",
        headers=auth(s, role="partner", org=org),
        json={"url": rec.url(name), "event_types": event_types or [SUBMITTED]},
    )
    assert r.status_code == 201, r.text
    sub = r.json()
    hook.secrets = [sub["secret"]]
    return sub, hook


async def refer(
    s: Settings, org: str, service: str = "svc-pain-mgmt", to_org: str = "PAIN-1"
) -> str:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{s.api_port('referrals')}", timeout=30
    ) as c:
        r = await c.post(
            "/referrals",
            json=referral_body(to_service_id=service, to_org=to_org),
            headers=auth(s, role="clinician", org=org),
        )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def q(sessions, sql: str, **params: Any) -> list[Any]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return list((await session.exec(text(sql).bindparams(**params))).all())


async def deliveries_of(sessions, sub_id: str) -> list[Any]:  # type: ignore[no-untyped-def]
    return await q(
        sessions,
        """
        SELECT id, status, attempts, payload->'data'->>'referral_id' AS referral_id
        FROM webhook_delivery WHERE subscription_id = :sid ORDER BY created_at""",
        sid=sub_id,
    )


# --- the tests ------------------------------------------------------------------------------


class TestRetries:
    async def test_failed_attempts_are_retried_with_growing_gaps_and_accepted_once(
        self,
        running_apps: Settings,
        api: httpx.AsyncClient,
        receiver: Receiver,
        notifications_sessions,
    ) -> None:
        s, org = running_apps, _org()
        sub, hook = await subscribe(api, s, receiver, "retry", org, fail_first=3)
        refs = {await refer(s, org) for _ in range(3)}

        await eventually(lambda: hook.accepted_referrals() == sorted(refs), timeout=120)
        by_id = hook.by_webhook_id()
        assert len(by_id) == 3, "one webhook-id per event"
        for wid, gots in by_id.items():
            assert [g.status for g in gots] == [500, 500, 500, 200], wid
            assert all(g.verified_by == [0] and len(g.signatures) == 1 for g in gots)
            assert len({g.body for g in gots}) == 1, "every attempt sends the same event"
            gaps = [b.at - a.at for a, b in zip(gots, gots[1:], strict=False)]
            for gap, delay in zip(gaps, RETRIES, strict=True):
                assert gap >= delay * 0.98, (gaps, "a retry came before its delay")
            assert gaps[2] > gaps[0], gaps
        assert not hook.strangers()
        assert hook.not_cloudevents() == [], "every attempt is a CloudEvent the SDK reads"
        # the log agrees, and nothing more is owed: each delivery is done after 4 attempts.
        # The sender records results in batches after the partner has answered (issue #20),
        # so the rows settle a moment after the receiver has seen the 200

        async def settled() -> list[Any]:
            rows = await deliveries_of(notifications_sessions, sub["id"])
            return rows if all(r.status == "delivered" for r in rows) else []

        rows = await eventually(settled, timeout=30)
        assert sorted(r.referral_id for r in rows) == sorted(refs)
        assert {r.id for r in rows} == set(by_id)
        assert all((r.status, r.attempts) == ("delivered", 4) for r in rows)
        for r in rows:
            codes = [
                a.status_code
                for a in await q(
                    notifications_sessions,
                    "SELECT status_code FROM webhook_attempt "
                    "WHERE delivery_id = :id ORDER BY attempt",
                    id=r.id,
                )
            ]
            assert codes == [500, 500, 500, 200]
        got = await api.get(
            f"/webhook-subscriptions/{sub['id']}", headers=auth(s, role="partner", org=org)
        )
        assert got.json()["failing_since"] is None and got.json()["status"] == "active"


class TestSecretRotation:
    async def test_both_secrets_verify_during_the_grace_period_then_only_the_new(
        self,
        running_apps: Settings,
        api: httpx.AsyncClient,
        receiver: Receiver,
        notifications_sessions,
    ) -> None:
        s, org = running_apps, _org()
        sub, hook = await subscribe(api, s, receiver, "rotate", org)
        h = auth(s, role="partner", org=org)

        def got_for(ref: str) -> Got | None:
            return next(
                (g for g in hook.accepted() if g.payload["data"]["referral_id"] == ref), None
            )

        before = await refer(s, org)
        first = await eventually(lambda: got_for(before), timeout=90)
        assert first.verified_by == [0] and len(first.signatures) == 1

        r = await api.post(f"/webhook-subscriptions/{sub['id']}/rotate-secret", headers=h)
        assert r.status_code == 200, r.text
        hook.secrets.append(r.json()["secret"])  # [old, new]
        during = await refer(s, org)
        second = await eventually(lambda: got_for(during), timeout=90)
        assert second.verified_by == [0, 1], "old and new secret both verify"
        assert len(second.signatures) == 2

        # the grace period ends: only the new secret signs
        async with unit_of_work(notifications_sessions) as session:
            await session.exec(
                text(  # type: ignore[call-overload]
                    "UPDATE webhook_subscription SET previous_secret_until = now() - "
                    "interval '1 second' WHERE id = :id"
                ).bindparams(id=sub["id"])
            )
        after = await refer(s, org)
        third = await eventually(lambda: got_for(after), timeout=90)
        assert third.verified_by == [1] and len(third.signatures) == 1
        assert not hook.strangers()


class TestPartnerIsolation:
    async def test_a_partner_receives_only_events_that_concern_its_organisation(
        self,
        running_apps: Settings,
        api: httpx.AsyncClient,
        receiver: Receiver,
        notifications_sessions,
    ) -> None:
        s = running_apps
        a, c = _org(), _org()
        b = "TT-TALK1"  # a receiving service's organisation (tests/conftest.py KNOWN_SERVICES)
        sub_a, hook_a = await subscribe(api, s, receiver, "iso-a", a)
        sub_b, hook_b = await subscribe(api, s, receiver, "iso-b", b)
        tt = {"service": "svc-talking-therapies-ltc", "to_org": b}
        r1 = await refer(s, a)  # A -> PAIN-1: A's only
        r2 = await refer(s, c, **tt)  # C -> B: B's only
        r3 = await refer(s, a, **tt)  # A -> B: both
        r4 = await refer(s, c)  # C -> PAIN-1: neither

        await eventually(lambda: hook_a.accepted_referrals() == sorted([r1, r3]), timeout=90)
        await eventually(lambda: hook_b.accepted_referrals() == sorted([r2, r3]), timeout=90)

        async def all_consumed() -> bool:
            rows = await q(
                notifications_sessions,
                "SELECT referral_id FROM referral_index WHERE referral_id = ANY(:ids)",
                ids=[r1, r2, r3, r4],
            )
            return len(rows) == 4

        await eventually(all_consumed, timeout=90)
        # every event has been consumed: what each partner is owed is exactly its own
        owed_a = {r.referral_id for r in await deliveries_of(notifications_sessions, sub_a["id"])}
        owed_b = {r.referral_id for r in await deliveries_of(notifications_sessions, sub_b["id"])}
        assert owed_a == {r1, r3} and owed_b == {r2, r3}
        for hook in (hook_a, hook_b):
            assert not hook.strangers(), "a partner received another's event"
            assert all(g.verified_by == [0] for g in hook.got)
            # what a partner receives is a CloudEvent its SDK reads (HTTP binding, structured
            # mode: Content-Type application/cloudevents+json)
            assert hook.got and hook.not_cloudevents() == []
            assert all(g.headers["content-type"] == HTTP_CONTENT_TYPE for g in hook.got)
        assert {g.payload["data"]["referral_id"] for g in hook_a.got} == {r1, r3}
        assert {g.payload["data"]["referral_id"] for g in hook_b.got} == {r2, r3}
        # the same event reaches both partners under different webhook-ids
        assert not set(hook_a.by_webhook_id()) & set(hook_b.by_webhook_id())


class TestDisabling:
    async def test_a_partner_failing_for_the_window_is_disabled_told_and_can_recover(
        self,
        running_apps: Settings,
        api: httpx.AsyncClient,
        receiver: Receiver,
        notifications_sessions,
    ) -> None:
        s, org = running_apps, _org()
        sub, hook = await subscribe(api, s, receiver, "down", org, always_fail=True)
        h = auth(s, role="partner", org=org)
        ref = await refer(s, org)

        async def disabled() -> dict[str, Any] | None:
            r = await api.get(f"/webhook-subscriptions/{sub['id']}", headers=h)
            return r.json() if r.json()["status"] == "disabled" else None

        state = await eventually(disabled, timeout=120, interval=0.5)
        failing_since = datetime.fromisoformat(state["failing_since"])
        disabled_at = datetime.fromisoformat(state["disabled_at"])
        assert disabled_at - failing_since >= timedelta(seconds=s.webhook_disable_after_seconds)
        assert "without a success" in state["disabled_reason"]
        assert len(hook.got) >= 2 and all(g.status == 500 for g in hook.got)
        assert all(g.verified_by == [0] for g in hook.got)

        # its owner is told, in its organisation's inbox, and the dispatcher's act is audited
        inbox = await q(
            notifications_sessions,
            "SELECT subject, body, org FROM inbox_item WHERE owner = :o",
            o=f"org:{org}",
        )
        assert len(inbox) == 1 and inbox[0].org == org
        assert "disabled" in inbox[0].subject and sub["id"] in inbox[0].body
        assert "HTTP 500" in inbox[0].body
        audit = await q(
            notifications_sessions,
            "SELECT actor FROM audit_log WHERE resource_id = :id AND action = 'disable'",
            id=sub["id"],
        )
        assert [a.actor for a in audit] == ["system:notifications-dispatcher"]

        # the partner fixes its endpoint, resumes, and asks for the missed event again
        hook.always_fail = False
        r = await api.post(f"/webhook-subscriptions/{sub['id']}/resume", headers=h)
        assert r.json()["status"] == "active" and r.json()["failing_since"] is None
        [d] = (await api.get(f"/webhook-subscriptions/{sub['id']}/deliveries", headers=h)).json()
        r = await api.post(
            f"/webhook-subscriptions/{sub['id']}/deliveries/{d['id']}/resend", headers=h
        )
        assert r.status_code in (200, 409), r.text  # 409: resuming already sent it
        await eventually(lambda: hook.accepted_referrals() == [ref], timeout=60)
        assert {g.webhook_id for g in hook.got} == {d["id"]}, "same webhook-id throughout"
        detail = (
            await api.get(f"/webhook-subscriptions/{sub['id']}/deliveries/{d['id']}", headers=h)
        ).json()

        async def delivered() -> bool:
            got = (
                await api.get(f"/webhook-subscriptions/{sub['id']}/deliveries/{d['id']}", headers=h)
            ).json()
            return got["status"] == "delivered"

        await eventually(delivered, timeout=30)
        assert detail["attempt_log"][0]["status_code"] == 500
        assert detail["attempt_log"][0]["error"].startswith("HTTP 500")


class TestResend:
    async def test_resend_one_delivery_and_a_time_range_with_the_same_webhook_ids(
        self,
        running_apps: Settings,
        api: httpx.AsyncClient,
        receiver: Receiver,
        notifications_sessions,
    ) -> None:
        s, org = running_apps, _org()
        sub, hook = await subscribe(api, s, receiver, "again", org)
        h = auth(s, role="partner", org=org)
        start = datetime.now(UTC) - timedelta(seconds=5)
        refs = sorted([await refer(s, org), await refer(s, org)])
        await eventually(lambda: hook.accepted_referrals() == refs, timeout=90)
        ids = {g.payload["data"]["referral_id"]: g.webhook_id for g in hook.accepted()}

        def count(wid: str) -> int:
            return sum(1 for g in hook.accepted() if g.webhook_id == wid)

        one = ids[refs[0]]
        r = await api.post(f"/webhook-subscriptions/{sub['id']}/deliveries/{one}/resend", headers=h)
        assert r.status_code == 200 and r.json()["status"] == "pending"
        await eventually(lambda: count(one) == 2, timeout=60)
        assert count(ids[refs[1]]) == 1

        async def settled() -> bool:
            return all(
                d.status == "delivered"
                for d in await deliveries_of(notifications_sessions, sub["id"])
            )

        await eventually(settled, timeout=30)
        r = await api.post(
            f"/webhook-subscriptions/{sub['id']}/resend",
            headers=h,
            json={"since": start.isoformat()},
        )
        assert r.json() == {"resent": 2}
        await eventually(lambda: count(one) == 3 and count(ids[refs[1]]) == 2, timeout=60)
        bodies = defaultdict(set)
        for g in hook.accepted():
            bodies[g.webhook_id].add(g.body)
        assert all(len(b) == 1 for b in bodies.values()), "a resend is the same event"
        await eventually(settled, timeout=30)
        rows = {d.id: d.attempts for d in await deliveries_of(notifications_sessions, sub["id"])}
        assert rows == {one: 3, ids[refs[1]]: 2}


class TestSlowPartner:
    async def test_a_slow_partner_does_not_hold_up_the_others(
        self,
        running_apps: Settings,
        api: httpx.AsyncClient,
        receiver: Receiver,
        notifications_sessions,
    ) -> None:
        s = running_apps
        slow_org, fast_org = _org(), _org()
        release = asyncio.Event()
        slow_sub, slow = await subscribe(api, s, receiver, "slow", slow_org, hold=release)
        fast_sub, fast = await subscribe(api, s, receiver, "fast", fast_org)
        # both partners owed at once (as the consumer writes them), the slow one more
        async with unit_of_work(notifications_sessions) as session:
            for sub_id, org, n in ((slow_sub["id"], slow_org, 12), (fast_sub["id"], fast_org, 5)):
                for _ in range(n):
                    data = ReferralSubmitted(
                        referral_id=str(uuid.uuid4()),
                        from_org=org,
                        to_org="PAIN-1",
                        to_service_id="svc-pain-mgmt",
                        service_category="pain_management_programme",
                        priority="routine",
                        state="submitted",
                    )
                    event = make_event(data, subject=f"pt_{uuid.uuid4().hex}")
                    await session.exec(
                        text(  # type: ignore[call-overload]
                            "INSERT INTO webhook_delivery (id, subscription_id, event_id, "
                            "event_type, event_time, payload) VALUES (:id, :sid, :eid, :t, :at, "
                            "CAST(:p AS JSONB))"
                        ).bindparams(
                            id=f"msg_{uuid.uuid4().hex}",
                            sid=sub_id,
                            eid=event.id,
                            t=event.type,
                            at=event.time,
                            p=json.dumps(event.model_dump(mode="json")),
                        )
                    )
        try:

            def fast_done_while_slow_held() -> bool:
                if len(fast.accepted()) < 5:
                    return False
                # checked the moment the fast partner has everything
                assert slow.finished == 0, "the slow partner answered before the fast was done"
                assert slow.in_flight >= 1, "the slow partner should be holding requests"
                return True

            await eventually(fast_done_while_slow_held, timeout=60, interval=0.05)
            assert len({g.webhook_id for g in fast.accepted()}) == 5
        finally:
            release.set()
        limit = s.webhook_max_in_flight_per_subscription
        assert 1 <= slow.max_in_flight <= limit, "one partner's share of the senders is capped"
        await eventually(lambda: len({g.webhook_id for g in slow.accepted()}) == 12, timeout=90)
        assert not slow.strangers() and not fast.strangers()
        assert all(g.verified_by == [0] for g in slow.got + fast.got)
        assert slow.max_in_flight <= limit


class TestLeases:
    async def test_two_dispatchers_never_claim_the_same_row_and_a_dead_ones_rows_come_back(
        self,
        running_apps: Settings,
        api: httpx.AsyncClient,
        receiver: Receiver,
        notifications_sessions,
    ) -> None:
        """Two in-process senders claim at once beside the stack's dispatcher and then die
        without sending: no row is claimed twice, and when their leases end the stack's
        dispatcher delivers every row, each exactly once."""
        from services.notifications.webhooks.sender import WebhookSender

        s, org = running_apps, _org()
        sub, hook = await subscribe(api, s, receiver, "lease", org)
        h = auth(s, role="partner", org=org)
        await api.post(f"/webhook-subscriptions/{sub['id']}/pause", headers=h)
        ids = []
        async with unit_of_work(notifications_sessions) as session:
            for _ in range(8):
                data = ReferralSubmitted(
                    referral_id=str(uuid.uuid4()),
                    from_org=org,
                    to_org="PAIN-1",
                    to_service_id="svc-pain-mgmt",
                    service_category="pain_management_programme",
                    priority="routine",
                    state="submitted",
                )
                event = make_event(data, subject=f"pt_{uuid.uuid4().hex}")
                ids.append(f"msg_{uuid.uuid4().hex}")
                await session.exec(
                    text(  # type: ignore[call-overload]
                        "INSERT INTO webhook_delivery (id, subscription_id, event_id, event_type, "
                        "event_time, payload) VALUES (:id, :sid, :eid, :t, :at, CAST(:p AS JSONB))"
                    ).bindparams(
                        id=ids[-1],
                        sid=sub["id"],
                        eid=event.id,
                        t=event.type,
                        at=event.time,
                        p=json.dumps(event.model_dump(mode="json")),
                    )
                )
        one, two = await WebhookSender.create(s), await WebhookSender.create(s)
        try:
            one.lease_seconds = two.lease_seconds = 1.0
            await api.post(f"/webhook-subscriptions/{sub['id']}/resume", headers=h)
            first, second = await asyncio.gather(one.claim(64), two.claim(64))
        finally:
            await one.close()
            await two.close()
        mine = [d.id for d in first] + [d.id for d in second]
        assert len(mine) == len(set(mine)), "a row was claimed twice"
        assert set(mine) <= set(ids)
        # the "dead" senders never answer; their rows come back and are sent once each
        await eventually(
            lambda: sorted(g.webhook_id for g in hook.accepted()) == sorted(ids), timeout=90
        )
        assert all(len(v) == 1 for v in hook.by_webhook_id().values())
        assert not hook.strangers()
