"""The partner webhook API on the real PostgreSQL (app in-process): subscriptions managed by a
partner for its own organisation only (another's is a 404), the secret shown only on create
and rotate, clear problem+json 4xx for bad input (unknown event types, bad filters, bad
URLs, and in production mode non-https and private/loopback endpoints), If-Match,
Idempotency-Key, the delivery log and resends, every write audited.

Deliveries written here belong to paused subscriptions, so a dispatcher running in the same
test session (the delivery tests' stack) leaves them alone."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.notifications.webhooks import api as api_webhooks
from shared.db import unit_of_work
from shared.settings import Settings
from shared.web import create_app
from tests.conftest import auth

SUBMITTED = "uk.waymark.referral.submitted"
ACCEPTED = "uk.waymark.referral.accepted"
PROBLEM = "application/problem+json"


def _org() -> str:
    return f"P-{uuid.uuid4().hex[:10]}"


def partner(s: Settings, org: str, role: str = "partner") -> dict[str, str]:
    return auth(s, role=role, org=org)


def body(**kw: Any) -> dict[str, Any]:
    return {"url": "http://127.0.0.1:9/hooks", "event_types": [SUBMITTED], **kw}


async def create(client: httpx.AsyncClient, s: Settings, org: str, **kw: Any) -> dict[str, Any]:
    r = await client.post("/webhook-subscriptions", json=body(**kw), headers=partner(s, org))
    assert r.status_code == 201, r.text
    return r.json()


async def q(sessions, sql: str, **params: Any) -> list[Any]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return list((await session.exec(text(sql).bindparams(**params))).all())


async def run(sessions, sql: str, **params: Any) -> None:  # type: ignore[no-untyped-def]
    async with unit_of_work(sessions) as session:
        await session.exec(text(sql).bindparams(**params))


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    doc = r.json()
    assert doc["status"] == status and doc["title"] and doc["detail"]
    return doc


async def add_delivery(
    sessions,
    sub_id: str,
    *,
    status: str = "delivered",  # type: ignore[no-untyped-def]
    attempts: int = 1,
    created_at: datetime | None = None,
    org: str = "X",
) -> str:
    did = f"msg_{uuid.uuid4().hex}"
    event_id = str(uuid.uuid4())
    payload = {"id": event_id, "type": SUBMITTED, "data": {"from_org": org}}
    await run(
        sessions,
        """
        INSERT INTO webhook_delivery (id, subscription_id, event_id, event_type, event_time,
            payload, status, attempts, created_at, last_status_code)
        VALUES (:id, :sid, :eid, :t, now(), CAST(:p AS JSONB), :status, :attempts,
                COALESCE(CAST(:created AS timestamptz), now()), 500)""",
        id=did,
        sid=sub_id,
        eid=event_id,
        t=SUBMITTED,
        p=json.dumps(payload),
        status=status,
        attempts=attempts,
        created=created_at,
    )
    for n in range(1, attempts + 1):
        await run(
            sessions,
            """
            INSERT INTO webhook_attempt (delivery_id, attempt, status_code, error, duration_ms)
            VALUES (:id, :n, :code, :err, 12)""",
            id=did,
            n=n,
            code=200 if status == "delivered" and n == attempts else 500,
            err=None if status == "delivered" and n == attempts else "HTTP 500",
        )
    return did


async def paused(client: httpx.AsyncClient, s: Settings, org: str) -> dict[str, Any]:
    sub = await create(client, s, org)
    r = await client.post(f"/webhook-subscriptions/{sub['id']}/pause", headers=partner(s, org))
    assert r.json()["status"] == "paused"
    return sub


class TestCreate:
    async def test_a_partner_subscribes_its_own_organisation_and_sees_the_secret_once(
        self, notifications_client: httpx.AsyncClient, settings: Settings, notifications_sessions
    ) -> None:
        org = _org()
        r = await notifications_client.post(
            "/webhook-subscriptions",
            headers=partner(settings, org),
            json=body(
                event_types=[SUBMITTED, ACCEPTED],
                description="triage feed",
                filters={"role": "sender", "priorities": ["urgent"]},
            ),
        )
        assert r.status_code == 201, r.text
        sub = r.json()
        assert sub["org"] == org and sub["status"] == "active" and sub["version"] == 1
        assert sub["secret"].startswith("whsec_")
        assert sub["filters"] == {"role": "sender", "priorities": ["urgent"]}
        assert r.headers["location"] == f"/webhook-subscriptions/{sub['id']}"
        assert r.headers["etag"] == 'W/"1"'
        got = await notifications_client.get(
            f"/webhook-subscriptions/{sub['id']}", headers=partner(settings, org)
        )
        assert got.status_code == 200 and "secret" not in got.json()
        assert got.json()["event_types"] == [SUBMITTED, ACCEPTED]
        listed = await notifications_client.get(
            "/webhook-subscriptions", headers=partner(settings, org)
        )
        assert [x["id"] for x in listed.json()] == [sub["id"]]
        assert "secret" not in listed.json()[0]
        [row] = await q(
            notifications_sessions,
            "SELECT secret FROM webhook_subscription WHERE id = :id",
            id=sub["id"],
        )
        assert row.secret == sub["secret"]
        audit = await q(
            notifications_sessions,
            "SELECT action, actor_org FROM audit_log WHERE resource_id = :id",
            id=sub["id"],
        )
        assert [(a.action, a.actor_org) for a in audit] == [("create", org)]

    async def test_an_admin_of_the_organisation_may_manage_it_too(
        self, notifications_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        sub = await create(notifications_client, settings, org)
        r = await notifications_client.get(
            f"/webhook-subscriptions/{sub['id']}", headers=partner(settings, org, role="admin")
        )
        assert r.status_code == 200

    async def test_an_idempotency_key_replays_the_first_answer(
        self, notifications_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        h = {**partner(settings, org), "Idempotency-Key": f"k-{uuid.uuid4()}"}
        first = await notifications_client.post("/webhook-subscriptions", json=body(), headers=h)
        again = await notifications_client.post("/webhook-subscriptions", json=body(), headers=h)
        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        other = await notifications_client.post(
            "/webhook-subscriptions", json=body(description="other"), headers=h
        )
        assert_problem(other, 409)
        listed = await notifications_client.get(
            "/webhook-subscriptions", headers=partner(settings, org)
        )
        assert len(listed.json()) == 1

    @pytest.mark.parametrize(
        "bad,field",
        [
            ({"event_types": ["uk.waymark.referral.teleported"]}, "unknown event type"),
            ({"event_types": ["uk.waymark.journey.alert.assigned"]}, "cannot be subscribed"),
            ({"event_types": []}, "event_types"),
            ({"event_types": [""]}, "event_types"),
            ({"filters": {"colour": "red"}}, "filters"),
            ({"filters": {"role": "both"}}, "filters"),
            ({"filters": {"priorities": ["whenever"]}}, "filters"),
            ({"filters": {"service_categories": ["Not A Code"]}}, "filters"),
            ({"url": "ftp://127.0.0.1/x"}, "https"),
            ({"url": "http://user:pw@127.0.0.1/x"}, "credentials"),
            ({"url": "not a url"}, "url"),
            ({"url": "http://127.0.0.1/\x00"}, "control"),
            ({"url": "x" * 2001}, "url"),
            ({"description": "line\nbreak"}, "description"),
            ({"description": "nul\x00"}, "description"),
            ({"unexpected": 1}, "unexpected"),
        ],
    )
    async def test_bad_input_is_a_clear_4xx_problem(
        self,
        notifications_client: httpx.AsyncClient,
        settings: Settings,
        bad: dict[str, Any],
        field: str,
    ) -> None:
        org = _org()
        r = await notifications_client.post(
            "/webhook-subscriptions", json=body(**bad), headers=partner(settings, org)
        )
        doc = assert_problem(r, 422)
        assert field in json.dumps(doc)
        listed = await notifications_client.get(
            "/webhook-subscriptions", headers=partner(settings, org)
        )
        assert listed.json() == []

    async def test_a_body_that_is_not_json_is_a_4xx(
        self, notifications_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        r = await notifications_client.post(
            "/webhook-subscriptions",
            content=b"{nope",
            headers={**partner(settings, _org()), "content-type": "application/json"},
        )
        assert_problem(r, 422)

    async def test_other_roles_and_strangers_are_refused(
        self, notifications_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        for role in ("clinician", "coordinator", "service_staff", "service"):
            r = await notifications_client.post(
                "/webhook-subscriptions", json=body(), headers=auth(settings, role=role, org=org)
            )
            assert_problem(r, 403)
            r = await notifications_client.get(
                "/webhook-subscriptions", headers=auth(settings, role=role, org=org)
            )
            assert_problem(r, 403)
        assert_problem(await notifications_client.get("/webhook-subscriptions"), 401)


class TestPartnerIsolation:
    async def test_another_organisations_subscription_does_not_exist_for_you(
        self, notifications_client: httpx.AsyncClient, settings: Settings, notifications_sessions
    ) -> None:
        a, b = _org(), _org()
        sub = await create(notifications_client, settings, a)
        sid = sub["id"]
        did = await add_delivery(notifications_sessions, sid)
        hb = partner(settings, b)
        calls = [
            ("GET", f"/webhook-subscriptions/{sid}", None),
            ("PATCH", f"/webhook-subscriptions/{sid}", {"description": "mine now"}),
            ("DELETE", f"/webhook-subscriptions/{sid}", None),
            ("POST", f"/webhook-subscriptions/{sid}/pause", None),
            ("POST", f"/webhook-subscriptions/{sid}/resume", None),
            ("POST", f"/webhook-subscriptions/{sid}/rotate-secret", None),
            ("GET", f"/webhook-subscriptions/{sid}/deliveries", None),
            ("GET", f"/webhook-subscriptions/{sid}/deliveries/{did}", None),
            ("POST", f"/webhook-subscriptions/{sid}/deliveries/{did}/resend", None),
            ("POST", f"/webhook-subscriptions/{sid}/resend", {"since": "2000-01-01T00:00:00Z"}),
        ]
        for method, path, js in calls:
            headers = {**hb, "If-Match": 'W/"1"'}
            r = await notifications_client.request(method, path, json=js, headers=headers)
            doc = assert_problem(r, 404)
            assert a not in json.dumps(doc)
        listed = await notifications_client.get("/webhook-subscriptions", headers=hb)
        assert listed.json() == []
        # nothing changed for the owner
        r = await notifications_client.get(
            f"/webhook-subscriptions/{sid}", headers=partner(settings, a)
        )
        assert r.json()["version"] == 1 and r.json()["status"] == "active"

    async def test_an_unknown_or_malformed_id_is_a_404(
        self, notifications_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        h = partner(settings, _org())
        for sid in ("whs_nope", "%00", "a" * 100, "..", "'; DROP TABLE x; --"):
            r = await notifications_client.get(f"/webhook-subscriptions/{sid}", headers=h)
            # a control character is refused (400) before any route runs
            assert r.status_code in (400, 404, 422), (sid, r.text)
            assert r.headers["content-type"].startswith(PROBLEM)


class TestChange:
    async def test_patch_needs_the_current_etag(
        self, notifications_client: httpx.AsyncClient, settings: Settings, notifications_sessions
    ) -> None:
        org = _org()
        sub = await create(notifications_client, settings, org)
        path, h = f"/webhook-subscriptions/{sub['id']}", partner(settings, org)
        assert_problem(
            await notifications_client.patch(path, json={"description": "x"}, headers=h), 428
        )
        assert_problem(
            await notifications_client.patch(
                path, json={"description": "x"}, headers={**h, "If-Match": 'W/"7"'}
            ),
            412,
        )
        assert_problem(
            await notifications_client.patch(
                path, json={"description": "x"}, headers={**h, "If-Match": "garbage"}
            ),
            422,
        )
        r = await notifications_client.patch(
            path,
            json={"event_types": [ACCEPTED], "filters": {"role": "receiver"}},
            headers={**h, "If-Match": 'W/"1"'},
        )
        assert r.status_code == 200, r.text
        assert r.json()["event_types"] == [ACCEPTED] and r.json()["version"] == 2
        assert r.json()["filters"] == {"role": "receiver"}
        assert r.headers["etag"] == 'W/"2"' and "secret" not in r.json()
        assert_problem(
            await notifications_client.patch(
                path, json={"event_types": None}, headers={**h, "If-Match": 'W/"2"'}
            ),
            422,
        )
        assert_problem(
            await notifications_client.patch(
                path, json={"event_types": ["nope"]}, headers={**h, "If-Match": 'W/"2"'}
            ),
            422,
        )
        audit = await q(
            notifications_sessions,
            "SELECT action, detail FROM audit_log WHERE resource_id = :id ORDER BY at",
            id=sub["id"],
        )
        assert [a.action for a in audit] == ["create", "update"]
        assert audit[1].detail == "event_types,filters"

    async def test_pause_and_resume(
        self, notifications_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        sub = await create(notifications_client, settings, org)
        path, h = f"/webhook-subscriptions/{sub['id']}", partner(settings, org)
        r = await notifications_client.post(f"{path}/pause", headers=h)
        assert r.json()["status"] == "paused" and r.json()["version"] == 2
        r = await notifications_client.post(f"{path}/pause", headers=h)
        assert r.json()["status"] == "paused" and r.json()["version"] == 2  # no change
        r = await notifications_client.post(f"{path}/resume", headers=h)
        assert r.json()["status"] == "active" and r.json()["version"] == 3

    async def test_resume_re_enables_a_disabled_subscription_and_clears_its_failure(
        self, notifications_client: httpx.AsyncClient, settings: Settings, notifications_sessions
    ) -> None:
        org = _org()
        sub = await create(notifications_client, settings, org)
        await run(
            notifications_sessions,
            """
            UPDATE webhook_subscription SET status = 'disabled', disabled_at = now(),
                disabled_reason = 'failing', failing_since = now() - interval '2 days'
            WHERE id = :id""",
            id=sub["id"],
        )
        path, h = f"/webhook-subscriptions/{sub['id']}", partner(settings, org)
        assert_problem(await notifications_client.post(f"{path}/pause", headers=h), 409)
        r = await notifications_client.post(f"{path}/resume", headers=h)
        out = r.json()
        assert out["status"] == "active"
        assert out["failing_since"] is None and out["disabled_at"] is None
        assert out["disabled_reason"] is None

    async def test_rotating_shows_the_new_secret_once_and_keeps_the_old_for_the_grace(
        self, notifications_client: httpx.AsyncClient, settings: Settings, notifications_sessions
    ) -> None:
        org = _org()
        sub = await create(notifications_client, settings, org)
        path, h = f"/webhook-subscriptions/{sub['id']}", partner(settings, org)
        before = datetime.now(UTC)
        r = await notifications_client.post(f"{path}/rotate-secret", headers=h)
        assert r.status_code == 200, r.text
        new = r.json()
        assert new["secret"].startswith("whsec_") and new["secret"] != sub["secret"]
        until = datetime.fromisoformat(new["previous_secret_expires_at"])
        grace = timedelta(seconds=settings.webhook_secret_grace_seconds)
        assert before + grace <= until <= datetime.now(UTC) + grace
        [row] = await q(
            notifications_sessions,
            "SELECT secret, previous_secret FROM webhook_subscription WHERE id = :id",
            id=sub["id"],
        )
        assert (row.secret, row.previous_secret) == (new["secret"], sub["secret"])
        got = await notifications_client.get(path, headers=h)
        assert "secret" not in got.json()
        assert got.json()["previous_secret_expires_at"] is not None

    async def test_delete_cancels_what_is_owed_and_then_it_is_gone(
        self, notifications_client: httpx.AsyncClient, settings: Settings, notifications_sessions
    ) -> None:
        org = _org()
        sub = await paused(notifications_client, settings, org)
        pending = await add_delivery(
            notifications_sessions, sub["id"], status="pending", attempts=0
        )
        done = await add_delivery(notifications_sessions, sub["id"])
        path, h = f"/webhook-subscriptions/{sub['id']}", partner(settings, org)
        assert_problem(
            await notifications_client.delete(path, headers={**h, "If-Match": 'W/"1"'}), 412
        )
        r = await notifications_client.delete(path, headers=h)
        assert r.status_code == 204
        assert_problem(await notifications_client.get(path, headers=h), 404)
        assert_problem(await notifications_client.delete(path, headers=h), 404)
        rows = {
            r.id: r.status
            for r in await q(
                notifications_sessions,
                "SELECT id, status FROM webhook_delivery WHERE subscription_id = :id",
                id=sub["id"],
            )
        }
        assert rows == {pending: "cancelled", done: "delivered"}
        listed = await notifications_client.get("/webhook-subscriptions", headers=h)
        assert listed.json() == []


class TestDeliveryLog:
    async def test_deliveries_newest_first_with_filters_and_paging(
        self, notifications_client: httpx.AsyncClient, settings: Settings, notifications_sessions
    ) -> None:
        org = _org()
        sub = await paused(notifications_client, settings, org)
        t0 = datetime.now(UTC) - timedelta(hours=3)
        ids = [
            await add_delivery(
                notifications_sessions,
                sub["id"],
                status="failed" if i % 2 else "delivered",
                attempts=2,
                created_at=t0 + timedelta(hours=i),
            )
            for i in range(3)
        ]
        path, h = f"/webhook-subscriptions/{sub['id']}/deliveries", partner(settings, org)
        r = await notifications_client.get(path, headers=h)
        assert [d["id"] for d in r.json()] == ids[::-1]
        assert r.json()[0]["next_attempt_at"] is None
        r = await notifications_client.get(path, headers=h, params={"status": "failed"})
        assert [d["id"] for d in r.json()] == [ids[1]]
        r = await notifications_client.get(
            path,
            headers=h,
            params={
                "since": (t0 + timedelta(minutes=30)).isoformat(),
                "until": (t0 + timedelta(hours=2)).isoformat(),
            },
        )
        assert [d["id"] for d in r.json()] == [ids[1]]
        r = await notifications_client.get(path, headers=h, params={"limit": 1, "offset": 1})
        assert [d["id"] for d in r.json()] == [ids[1]]
        for bad in (
            {"status": "lost"},
            {"limit": 0},
            {"limit": 501},
            {"offset": -1},
            {"since": "yesterday"},
            {"since": "2026-01-01T00:00:00"},
            {"since": "0001-01-01T00:00:00+23:59"},
            {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        ):
            assert_problem(await notifications_client.get(path, headers=h, params=bad), 422)

    async def test_one_delivery_with_its_payload_and_attempts(
        self, notifications_client: httpx.AsyncClient, settings: Settings, notifications_sessions
    ) -> None:
        org = _org()
        sub = await paused(notifications_client, settings, org)
        did = await add_delivery(notifications_sessions, sub["id"], attempts=3, org=org)
        h = partner(settings, org)
        r = await notifications_client.get(
            f"/webhook-subscriptions/{sub['id']}/deliveries/{did}", headers=h
        )
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["payload"]["data"] == {"from_org": org}
        assert [(a["attempt"], a["status_code"]) for a in d["attempt_log"]] == [
            (1, 500),
            (2, 500),
            (3, 200),
        ]
        assert_problem(
            await notifications_client.get(
                f"/webhook-subscriptions/{sub['id']}/deliveries/msg_nope", headers=h
            ),
            404,
        )
        # a delivery of another of your subscriptions is not under this one
        other = await paused(notifications_client, settings, org)
        assert_problem(
            await notifications_client.get(
                f"/webhook-subscriptions/{other['id']}/deliveries/{did}", headers=h
            ),
            404,
        )
        audit = await q(
            notifications_sessions,
            "SELECT action FROM audit_log WHERE "
            "resource_id = :id AND resource_type = 'WebhookDelivery'",
            id=did,
        )
        assert [a.action for a in audit] == ["read"]

    async def test_resend_one_makes_it_due_now_with_the_schedule_afresh(
        self, notifications_client: httpx.AsyncClient, settings: Settings, notifications_sessions
    ) -> None:
        org = _org()
        sub = await paused(notifications_client, settings, org)
        did = await add_delivery(notifications_sessions, sub["id"], status="failed", attempts=7)
        r = await notifications_client.post(
            f"/webhook-subscriptions/{sub['id']}/deliveries/{did}/resend",
            headers=partner(settings, org),
        )
        assert r.status_code == 200, r.text
        assert r.json()["id"] == did and r.json()["status"] == "pending"
        [row] = await q(
            notifications_sessions,
            "SELECT status, attempts, retry_from, "
            "next_attempt_at <= now() AS due FROM webhook_delivery WHERE id = :id",
            id=did,
        )
        assert (row.status, row.attempts, row.retry_from, row.due) == ("pending", 7, 7, True)
        audit = await q(
            notifications_sessions, "SELECT action FROM audit_log WHERE resource_id = :id", id=did
        )
        assert [a.action for a in audit] == ["resend"]

    async def test_resend_a_time_range(
        self, notifications_client: httpx.AsyncClient, settings: Settings, notifications_sessions
    ) -> None:
        org = _org()
        sub = await paused(notifications_client, settings, org)
        t0 = datetime.now(UTC) - timedelta(days=1)
        old = await add_delivery(
            notifications_sessions, sub["id"], created_at=t0 - timedelta(hours=1)
        )
        in_range = [
            await add_delivery(
                notifications_sessions, sub["id"], status=st, created_at=t0 + timedelta(minutes=i)
            )
            for i, st in enumerate(["delivered", "failed", "failed"])
        ]
        path, h = f"/webhook-subscriptions/{sub['id']}/resend", partner(settings, org)
        r = await notifications_client.post(
            path,
            headers=h,
            json={
                "since": t0.isoformat(),
                "until": (t0 + timedelta(hours=1)).isoformat(),
                "only_failed": True,
            },
        )
        assert r.json() == {"resent": 2}
        r = await notifications_client.post(path, headers=h, json={"since": t0.isoformat()})
        assert r.json() == {"resent": 3}
        rows = {
            r.id: r.status
            for r in await q(
                notifications_sessions,
                "SELECT id, status FROM webhook_delivery WHERE subscription_id = :id",
                id=sub["id"],
            )
        }
        assert rows == {old: "delivered", **{i: "pending" for i in in_range}}
        for bad in (
            {},
            {"since": "2026-01-01"},
            {"since": t0.isoformat(), "until": (t0 - timedelta(1)).isoformat()},
            {"since": t0.isoformat(), "extra": True},
        ):
            assert_problem(await notifications_client.post(path, headers=h, json=bad), 422)


# --- production mode: https only, and no private, loopback or metadata endpoints ---------------


@pytest.fixture(scope="module")
async def production_client(infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The webhook routes in an app whose settings say production, with a stand-in DNS."""
    prod = infra.model_copy(update={"deployment_mode": "production"})
    app = create_app("notifications", title="prod", description="prod", settings=prod)
    app.include_router(api_webhooks.router)
    answers = {
        "partner.example": ["93.184.216.34"],
        "rebind.example": ["93.184.216.34", "10.0.0.7"],
        "metadata.example": ["169.254.169.254"],
    }

    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"no such host {host}")
        return answers[host]

    app.state.webhook_resolver = resolve
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://prod"
        ) as c:
            yield c


class TestProductionMode:
    @pytest.mark.parametrize(
        "url,why",
        [
            ("http://partner.example/h", "only https"),
            ("https://127.0.0.1/h", "loopback"),
            ("https://localhost/h", "local name"),
            ("https://10.1.2.3/h", "private"),
            ("https://192.168.0.10:8443/h", "private"),
            ("https://169.254.169.254/latest/meta-data/", "link-local"),
            ("https://[::1]/h", "loopback"),
            ("https://[fd00::5]/h", "unique local"),
            ("https://[::ffff:127.0.0.1]/h", "loopback"),
            ("https://100.64.1.1/h", "carrier-grade"),
            ("https://rebind.example/h", "resolves to 10.0.0.7"),
            ("https://metadata.example/h", "link-local"),
            ("https://unknown.example/h", "cannot be resolved"),
        ],
    )
    async def test_refused_endpoints(
        self, production_client: httpx.AsyncClient, settings: Settings, url: str, why: str
    ) -> None:
        r = await production_client.post(
            "/webhook-subscriptions", json=body(url=url), headers=partner(settings, _org())
        )
        doc = assert_problem(r, 422)
        assert why in doc["detail"]

    async def test_a_public_https_endpoint_is_accepted_and_patching_is_checked_too(
        self, production_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        h = partner(settings, org)
        r = await production_client.post(
            "/webhook-subscriptions", headers=h, json=body(url="https://partner.example/h")
        )
        assert r.status_code == 201, r.text
        sub = r.json()
        r = await production_client.patch(
            f"/webhook-subscriptions/{sub['id']}",
            json={"url": "https://10.0.0.1/h"},
            headers={**h, "If-Match": 'W/"1"'},
        )
        assert_problem(r, 422)
        r = await production_client.patch(
            f"/webhook-subscriptions/{sub['id']}",
            json={"url": "https://93.184.216.34/x"},
            headers={**h, "If-Match": 'W/"1"'},
        )
        assert r.status_code == 200 and r.json()["url"] == "https://93.184.216.34/x"
