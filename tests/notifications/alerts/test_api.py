"""The coordinators' alert inbox over HTTP, on the real database: alerts put in through the
consumer's own handler; the list's filters, sort and paging, the counts, one alert with its
history, who may see and act, the actions (409 in the wrong status, If-Match, Idempotency-Key)
and the AlertActionTaken event each action publishes through the outbox."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.settings import Settings
from shared.topics import NOTIFICATIONS
from tests.helpers import read_topic
from tests.notifications.alert_support import (
    coordinator,
    index_referral,
    new_org,
    new_patient,
    put_alert,
    rows,
)

NOW = datetime.now(UTC)


@pytest.fixture
def notif_sessions(notifications_sessions):  # type: ignore[no-untyped-def]
    return notifications_sessions


@pytest.fixture
def client(notifications_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return notifications_client


class Inbox:
    """One person's alerts (five, one of them resolved) across referrals of fresh orgs."""

    def __init__(self, s: Settings, sessions: async_sessionmaker) -> None:
        self.s, self.sessions = s, sessions
        self.patient = new_patient()
        self.me = f"coord-{uuid.uuid4().hex[:6]}"
        self.other = f"coord-{uuid.uuid4().hex[:6]}"
        self.gp, self.pain, self.physio = new_org("GP"), new_org("PAIN"), new_org("PHYSIO")
        self.ids: dict[str, str] = {}

    async def build(self) -> Inbox:
        r1 = await index_referral(
            self.s, self.sessions, patient_id=self.patient, from_org=self.gp, to_org=self.pain
        )
        r2 = await index_referral(
            self.s, self.sessions, patient_id=self.patient, from_org=self.gp, to_org=self.physio
        )
        days = lambda n: NOW - timedelta(days=n)  # noqa: E731
        specs: dict[str, dict[str, Any]] = {
            # a stall's id as the journey makes it: the referral and when it entered the state
            "stalled": dict(
                kind="stalled",
                severity="medium",
                status="open",
                referral_ids=[r1],
                at=days(20),
                alert_id=f"{self.patient}:stalled.not_triaged:{r1}:{days(20).isoformat()}",
            ),
            "loop": dict(
                kind="looping",
                severity="high",
                status="acknowledged",
                assignee=self.me,
                referral_ids=[r2],
                at=days(10),
            ),
            "safety": dict(kind="safety", severity="urgent", status="escalated", at=days(2)),
            "resolved": dict(
                kind="stalled",
                rule="stalled.not_booked",
                severity="medium",
                status="resolved",
                referral_ids=[r1],
                at=days(30),
            ),
            "snoozed": dict(
                kind="looping",
                rule="looping.ping_pong",
                severity="high",
                status="snoozed",
                assignee=self.other,
                referral_ids=[r2, r1],
                at=days(5),
            ),
        }
        for name, spec in specs.items():
            self.ids[name] = await put_alert(self.s, self.sessions, patient_id=self.patient, **spec)
        return self

    def h(self, **kw: Any) -> dict[str, str]:
        return coordinator(self.s, user=self.me, **kw)

    async def names(self, client: httpx.AsyncClient, **params: Any) -> list[str]:
        r = await client.get(
            "/alerts", params={"patient_id": self.patient, **params}, headers=self.h()
        )
        assert r.status_code == 200, r.text
        by_id = {v: k for k, v in self.ids.items()}
        return [by_id[a["alert_id"]] for a in r.json()["items"]]


@pytest.fixture
async def inbox(infra: Settings, notif_sessions: async_sessionmaker) -> Inbox:
    return await Inbox(infra, notif_sessions).build()


class TestList:
    async def test_by_default_everything_not_resolved_oldest_first(self, client, inbox):
        assert await inbox.names(client) == ["stalled", "loop", "snoozed", "safety"]

    async def test_sort_by_severity_puts_urgent_first_then_oldest(self, client, inbox):
        assert await inbox.names(client, sort="severity") == [
            "safety",
            "loop",
            "snoozed",
            "stalled",
        ]

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"kind": "looping"}, ["loop", "snoozed"]),
            ({"kind": ["safety", "stalled"]}, ["stalled", "safety"]),
            ({"severity": "high"}, ["loop", "snoozed"]),
            ({"severity": ["urgent", "medium"]}, ["stalled", "safety"]),
            ({"status": "resolved"}, ["resolved"]),
            ({"status": ["open", "resolved"]}, ["resolved", "stalled"]),
            (
                {"kind": "stalled", "status": ["open", "resolved"], "severity": "medium"},
                ["resolved", "stalled"],
            ),
            ({"assignee": "unassigned"}, ["stalled", "safety"]),
            ({"min_age_days": 7}, ["stalled", "loop"]),
            ({"min_age_days": 0}, ["stalled", "loop", "snoozed", "safety"]),
        ],
    )
    async def test_filters(self, client, inbox, params, expected):
        assert await inbox.names(client, **params) == expected

    async def test_assignee_me_and_a_named_user(self, client, inbox):
        assert await inbox.names(client, assignee="me") == ["loop"]
        assert await inbox.names(client, assignee=inbox.other) == ["snoozed"]

    async def test_raised_after_and_before(self, client, inbox):
        after = (NOW - timedelta(days=6)).isoformat()
        assert await inbox.names(client, raised_after=after) == ["snoozed", "safety"]
        assert await inbox.names(
            client,
            raised_after=(NOW - timedelta(days=15)).isoformat(),
            raised_before=(NOW - timedelta(days=3)).isoformat(),
        ) == ["loop", "snoozed"]

    async def test_org_is_either_end_of_the_alerts_referrals(self, client, inbox):
        assert await inbox.names(client, org=inbox.pain) == ["stalled", "snoozed"]
        assert await inbox.names(client, org=inbox.physio) == ["loop", "snoozed"]
        assert await inbox.names(client, org=inbox.gp) == ["stalled", "loop", "snoozed"]
        assert await inbox.names(client, org=new_org()) == []

    async def test_org_alone_scopes_the_ics_inbox_to_that_organisation(self, client, inbox):
        r = await client.get(
            "/alerts", params={"org": inbox.pain, "status": ["open", "resolved"]}, headers=inbox.h()
        )
        assert {a["alert_id"] for a in r.json()["items"]} == {
            inbox.ids["stalled"],
            inbox.ids["resolved"],
        }

    async def test_paging_with_total(self, client, inbox):
        pages = []
        for offset in (0, 2, 4):
            r = await client.get(
                "/alerts",
                params={"patient_id": inbox.patient, "limit": 2, "offset": offset},
                headers=inbox.h(),
            )
            body = r.json()
            assert (body["total"], body["limit"], body["offset"]) == (4, 2, offset)
            pages.append([a["alert_id"] for a in body["items"]])
        assert [len(p) for p in pages] == [2, 2, 0]
        assert pages[0] + pages[1] == [
            inbox.ids[n] for n in ("stalled", "loop", "snoozed", "safety")
        ]

    async def test_an_item_carries_codes_its_version_and_what_may_be_done(self, client, inbox):
        r = await client.get(
            "/alerts",
            params={
                "patient_id": inbox.patient,
                "kind": "looping",
                "severity": "high",
                "status": "acknowledged",
            },
            headers=inbox.h(),
        )
        [item] = r.json()["items"]
        assert item["alert_id"] == inbox.ids["loop"]
        assert (
            item["patient_id"],
            item["kind"],
            item["rule"],
            item["severity"],
            item["status"],
            item["assignee"],
            item["seq"],
            item["version"],
        ) == (
            inbox.patient,
            "looping",
            "looping.re_referral",
            "high",
            "acknowledged",
            inbox.me,
            1,
            1,
        )
        assert item["allowed_actions"] == ["assign", "snooze", "resolve"]
        assert item["ics"] == inbox.s.ics and len(item["referral_ids"]) == 1

    @pytest.mark.parametrize(
        "params",
        [
            {"kind": "nonsense"},
            {"severity": "critical"},
            {"status": "closed"},
            {"sort": "newest"},
            {"limit": 0},
            {"limit": 201},
            {"offset": -1},
            {"min_age_days": -1},
            {"org": "not an org"},
            {"assignee": "two words"},
            {"raised_after": "2026-01-02T00:00:00Z", "raised_before": "2026-01-01T00:00:00Z"},
            {"raised_after": "yesterday"},
            {"patient_id": "PT-UPPER"},
        ],
    )
    async def test_bad_filters_are_422(self, client, inbox, params):
        r = await client.get("/alerts", params=params, headers=inbox.h())
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")

    async def test_every_alert_listed_is_an_audited_read_of_its_patient(
        self, client, inbox, notif_sessions
    ):
        await inbox.names(client, kind="looping")
        audit = await rows(
            notif_sessions,
            "SELECT resource_id, actor, detail FROM audit_log "
            "WHERE patient_id = :p AND resource_type = 'Alert'",
            p=inbox.patient,
        )
        assert sorted(a.resource_id for a in audit) == sorted(
            [inbox.ids["loop"], inbox.ids["snoozed"]]
        )
        assert {(a.actor, a.detail) for a in audit} == {(f"{inbox.me}", "list")}


class TestCounts:
    async def test_counts_by_kind_severity_and_status(self, client, inbox):
        r = await client.get(
            "/alerts/counts", params={"patient_id": inbox.patient}, headers=inbox.h()
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "total": 4,
            "by_kind": {"stalled": 1, "looping": 2, "safety": 1, "pathway": 0},
            "by_severity": {"urgent": 1, "high": 2, "medium": 1},
            "by_status": {"open": 1, "acknowledged": 1, "escalated": 1, "snoozed": 1},
        }

    async def test_counts_follow_the_filters(self, client, inbox):
        r = await client.get(
            "/alerts/counts",
            params={"patient_id": inbox.patient, "status": ["open", "resolved"], "kind": "stalled"},
            headers=inbox.h(),
        )
        assert r.json() == {
            "total": 2,
            "by_kind": {"stalled": 2, "looping": 0, "safety": 0, "pathway": 0},
            "by_severity": {"urgent": 0, "high": 0, "medium": 2},
            "by_status": {"open": 1, "resolved": 1},
        }


class TestOneAlert:
    async def test_the_row_its_history_and_why_the_explanation_is_missing(
        self, client, inbox, notif_sessions
    ):
        alert_id = inbox.ids["loop"]
        r = await client.get(f"/alerts/{alert_id}", headers=inbox.h())
        assert r.status_code == 200, r.text
        body = r.json()
        assert r.headers["etag"] == 'W/"1"'
        assert (body["alert_id"], body["status"], body["assignee"]) == (
            alert_id,
            "acknowledged",
            inbox.me,
        )
        assert [(h["change"], h["status"], h["actor"]) for h in body["history"]] == [
            ("raised", "acknowledged", "journey")
        ]
        # this synthetic person has no PatientJourney: the row, and the reason, never a 500
        assert body["explanation"] is None and body["evidence"] is None
        assert "not found" in body["explanation_unavailable"]
        audit = await rows(
            notif_sessions,
            "SELECT detail FROM audit_log WHERE resource_id = :a AND patient_id = :p",
            a=alert_id,
            p=inbox.patient,
        )
        assert [a.detail for a in audit] == ["detail"]

    async def test_an_unknown_alert_is_404(self, client, inbox):
        r = await client.get(f"/alerts/{inbox.patient}:nothing", headers=inbox.h())
        assert r.status_code == 404


class TestWhoMaySee:
    @pytest.mark.parametrize(
        "kw",
        [
            {"role": "clinician", "org": "GP-1"},
            {"role": "partner", "org": "PARTNER-1"},
            {"role": "service_staff", "org": "PAIN-1"},
            {"ics": "ICS-ELSEWHERE"},
        ],
    )
    @pytest.mark.parametrize("path", ["/alerts", "/alerts/counts", "/alerts/{id}"])
    async def test_only_coordinators_and_admins_of_this_ics_read(self, client, inbox, kw, path):
        r = await client.get(
            path.format(id=inbox.ids["stalled"]), headers=coordinator(inbox.s, **kw)
        )
        assert r.status_code == 403, r.text

    @pytest.mark.parametrize(
        "kw",
        [
            {"role": "clinician", "org": "GP-1"},
            {"role": "partner", "org": "PARTNER-1"},
            {"ics": "ICS-ELSEWHERE"},
            {"role": "admin"},
        ],
    )
    async def test_only_coordinators_of_the_alerts_ics_act(self, client, inbox, kw, notif_sessions):
        r = await client.post(
            f"/alerts/{inbox.ids['stalled']}/acknowledge", headers=coordinator(inbox.s, **kw)
        )
        assert r.status_code == 403, r.text
        [row] = await rows(
            notif_sessions,
            "SELECT status, version FROM alert WHERE alert_id = :a",
            a=inbox.ids["stalled"],
        )
        assert (row.status, row.version) == ("open", 1)

    @pytest.mark.parametrize("role", ["admin", "ics_lead"])
    async def test_admins_and_ics_leads_see_no_alerts(self, client, inbox, role):
        r = await client.get(
            "/alerts", params={"patient_id": inbox.patient}, headers=coordinator(inbox.s, role=role)
        )
        assert r.status_code == 403 and inbox.patient not in r.text

    async def test_no_token_is_401(self, client, inbox):
        assert (await client.get("/alerts")).status_code == 401
        assert (await client.post(f"/alerts/{inbox.ids['stalled']}/acknowledge")).status_code == 401


async def outbox_events(sessions: async_sessionmaker, patient_id: str) -> list[Any]:
    return await rows(
        sessions,
        "SELECT topic, key, event_type, payload FROM outbox WHERE key = :k ORDER BY seq",
        k=patient_id,
    )


class TestActions:
    async def test_acknowledge_changes_the_row_at_once_in_one_transaction(
        self, client, inbox, notif_sessions
    ):
        alert_id = inbox.ids["stalled"]
        r = await client.post(f"/alerts/{alert_id}/acknowledge", headers=inbox.h())
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["status"], body["assignee"], body["version"], body["seq"]) == (
            "acknowledged",
            inbox.me,
            2,
            1,
        )
        assert body["acknowledged_at"] is not None
        assert body["allowed_actions"] == ["assign", "snooze", "resolve"]
        assert r.headers["etag"] == 'W/"2"'
        [history] = await rows(
            notif_sessions,
            "SELECT change, status, actor, assignee FROM "
            "alert_history WHERE alert_id = :a AND "
            "actor <> 'journey'",
            a=alert_id,
        )
        assert tuple(history) == ("acknowledged", "acknowledged", inbox.me, inbox.me)
        [event] = await outbox_events(notif_sessions, inbox.patient)
        assert event.topic == inbox.s.topic(NOTIFICATIONS)
        assert event.event_type == "uk.waymark.notifications.alert-action.taken"
        assert event.payload["subject"] == inbox.patient
        assert event.payload["data"] == {
            "alert_id": alert_id,
            "action": "acknowledge",
            "actor": inbox.me,
            "assignee": None,
            "resolution": None,
            "snooze_until": None,
        }
        audit = await rows(
            notif_sessions,
            "SELECT action, actor, detail FROM audit_log "
            "WHERE resource_id = :a AND patient_id = :p",
            a=alert_id,
            p=inbox.patient,
        )
        assert [tuple(a) for a in audit] == [
            ("alert:acknowledge", inbox.me, "open -> acknowledged")
        ]

    async def test_acknowledging_twice_is_409_naming_the_allowed_actions(
        self, client, inbox, notif_sessions
    ):
        r = await client.post(f"/alerts/{inbox.ids['loop']}/acknowledge", headers=inbox.h())
        assert r.status_code == 409
        assert r.json()["allowed_actions"] == ["assign", "snooze", "resolve"]
        assert "assign, snooze, resolve" in r.json()["detail"]
        assert await outbox_events(notif_sessions, inbox.patient) == []

    @pytest.mark.parametrize(
        ("action", "body"),
        [
            ("acknowledge", None),
            ("assign", {"assignee": "me"}),
            ("snooze", {"until": (NOW + timedelta(days=1)).isoformat()}),
            ("resolve", {"resolution": "contacted-person"}),
        ],
    )
    async def test_a_resolved_alert_takes_no_action(
        self, client, inbox, action, body, notif_sessions
    ):
        r = await client.post(
            f"/alerts/{inbox.ids['resolved']}/{action}", json=body, headers=inbox.h()
        )
        assert r.status_code == 409, r.text
        assert r.json()["allowed_actions"] == []
        assert await outbox_events(notif_sessions, inbox.patient) == []

    async def test_assign_snooze_and_resolve(self, client, inbox, notif_sessions):
        alert_id = inbox.ids["loop"]
        r = await client.post(
            f"/alerts/{alert_id}/assign", json={"assignee": inbox.other}, headers=inbox.h()
        )
        assert (r.status_code, r.json()["status"], r.json()["assignee"]) == (
            200,
            "acknowledged",
            inbox.other,
        )
        until = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
        r = await client.post(
            f"/alerts/{alert_id}/snooze", json={"until": until.isoformat()}, headers=inbox.h()
        )
        assert r.status_code == 200, r.text
        assert (r.json()["status"], datetime.fromisoformat(r.json()["snoozed_until"])) == (
            "snoozed",
            until,
        )
        r = await client.post(
            f"/alerts/{alert_id}/resolve",
            json={"resolution": "contacted-person"},
            headers=inbox.h(),
        )
        body = r.json()
        assert (body["status"], body["resolution"], body["version"]) == (
            "resolved",
            "contacted-person",
            4,
        )
        assert body["resolved_at"] is not None and body["snoozed_until"] is None
        assert body["allowed_actions"] == []
        data = [e.payload["data"] for e in await outbox_events(notif_sessions, inbox.patient)]
        assert [(d["action"], d["assignee"], d["resolution"]) for d in data] == [
            ("assign", inbox.other, None),
            ("snooze", None, None),
            ("resolve", None, "contacted-person"),
        ]
        assert datetime.fromisoformat(data[1]["snooze_until"]) == until
        hist = await rows(
            notif_sessions,
            "SELECT change, status FROM alert_history WHERE alert_id = :a ORDER BY id",
            a=alert_id,
        )
        assert [tuple(h) for h in hist] == [
            ("raised", "acknowledged"),
            ("assigned", "acknowledged"),
            ("snoozed", "snoozed"),
            ("resolved", "resolved"),
        ]

    async def test_an_urgent_alert_is_never_snoozed(self, client, inbox, notif_sessions):
        """A snooze would keep a PHQ-9 item 9 alert from the duty rota (hazard HAZ-047): 409,
        nothing changed, nothing published; it is offered only what it may take."""
        alert_id = inbox.ids["safety"]
        r = await client.get(f"/alerts/{alert_id}", headers=inbox.h())
        assert r.json()["allowed_actions"] == ["acknowledge", "assign", "resolve"]
        until = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
        r = await client.post(
            f"/alerts/{alert_id}/snooze", json={"until": until.isoformat()}, headers=inbox.h()
        )
        assert r.status_code == 409, r.text
        assert "an urgent alert cannot be snoozed" in r.json()["detail"]
        assert r.json()["allowed_actions"] == ["acknowledge", "assign", "resolve"]
        after = (await client.get(f"/alerts/{alert_id}", headers=inbox.h())).json()
        assert (after["status"], after["version"]) == ("escalated", 1)
        assert await outbox_events(notif_sessions, inbox.patient) == []

    @pytest.mark.parametrize(
        ("action", "body"),
        [
            ("assign", {}),
            ("assign", {"assignee": "two words"}),
            ("assign", {"assignee": "x", "extra": 1}),
            ("snooze", {"until": (NOW - timedelta(hours=1)).isoformat()}),
            ("snooze", {"until": (NOW + timedelta(days=31)).isoformat()}),
            ("snooze", {"until": "2030-01-01T00:00:00"}),
            ("resolve", {"resolution": "Contacted the person"}),
            ("resolve", {}),
        ],
    )
    async def test_bad_bodies_are_422_and_change_nothing(
        self, client, inbox, action, body, notif_sessions
    ):
        r = await client.post(
            f"/alerts/{inbox.ids['stalled']}/{action}", json=body, headers=inbox.h()
        )
        assert r.status_code == 422, r.text
        assert await outbox_events(notif_sessions, inbox.patient) == []

    async def test_an_unknown_alert_is_404(self, client, inbox):
        r = await client.post(f"/alerts/{inbox.patient}:nothing/acknowledge", headers=inbox.h())
        assert r.status_code == 404


class TestConcurrency:
    async def test_if_match_with_an_old_version_is_412_and_changes_nothing(
        self, client, inbox, notif_sessions
    ):
        alert_id = inbox.ids["stalled"]
        r = await client.post(
            f"/alerts/{alert_id}/assign",
            json={"assignee": "me"},
            headers={**inbox.h(), "If-Match": 'W/"1"'},
        )
        assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
        r = await client.post(
            f"/alerts/{alert_id}/acknowledge", headers={**inbox.h(), "If-Match": 'W/"1"'}
        )
        assert r.status_code == 412, r.text
        assert r.json()["current_version"] == 2
        [row] = await rows(
            notif_sessions, "SELECT status, version FROM alert WHERE alert_id = :a", a=alert_id
        )
        assert (row.status, row.version) == ("open", 2)
        r = await client.post(
            f"/alerts/{alert_id}/acknowledge", headers={**inbox.h(), "If-Match": 'W/"2"'}
        )
        assert r.status_code == 200 and r.json()["version"] == 3

    async def test_a_malformed_if_match_is_422(self, client, inbox):
        r = await client.post(
            f"/alerts/{inbox.ids['stalled']}/acknowledge", headers={**inbox.h(), "If-Match": "two"}
        )
        assert r.status_code == 422

    async def test_an_idempotency_key_makes_a_retry_answer_the_same_and_do_nothing(
        self, client, inbox, notif_sessions
    ):
        alert_id = inbox.ids["snoozed"]
        h = {**inbox.h(), "Idempotency-Key": f"k-{uuid.uuid4()}"}
        first = await client.post(
            f"/alerts/{alert_id}/resolve", json={"resolution": "duplicate"}, headers=h
        )
        again = await client.post(
            f"/alerts/{alert_id}/resolve", json={"resolution": "duplicate"}, headers=h
        )
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["etag"] == first.headers["etag"]
        assert len(await outbox_events(notif_sessions, inbox.patient)) == 1
        other = await client.post(
            f"/alerts/{alert_id}/resolve", json={"resolution": "other-reason"}, headers=h
        )
        assert other.status_code == 409  # the same key for another request


class TestTheEventReachesTheJourney:
    async def test_the_action_is_published_on_the_notifications_topic_without_personal_data(
        self, running_apps, client, inbox
    ):
        s = running_apps
        alert_id = inbox.ids["safety"]
        h = coordinator(s, user=inbox.me, name="Casey Coordinator-Synthetic")
        r = await client.post(
            f"/alerts/{alert_id}/assign", json={"assignee": inbox.other}, headers=h
        )
        assert r.status_code == 200, r.text

        def mine(rec: Any) -> bool:
            try:  # tests/faults puts messages on the topic that are not events at all
                return json.loads(rec.value)["data"].get("alert_id") == alert_id
            except (ValueError, TypeError, KeyError, AttributeError):
                return False

        records = await read_topic(
            s, s.topic(NOTIFICATIONS), until=lambda rs: any(mine(x) for x in rs), timeout=60
        )
        [record] = [x for x in records if mine(x)]
        event = json.loads(record.value)
        assert record.key == inbox.patient.encode()
        assert (event["type"], event["source"], event["subject"]) == (
            "uk.waymark.notifications.alert-action.taken",
            "waymark/notifications",
            inbox.patient,
        )
        assert event["data"] == {
            "alert_id": alert_id,
            "action": "assign",
            "actor": inbox.me,
            "assignee": inbox.other,
            "resolution": None,
            "snooze_until": None,
        }
        assert "Casey" not in record.value.decode() and "Synthetic" not in record.value.decode()
