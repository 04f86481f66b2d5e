"""The journey's answer to a coordinator's action, on the real database: the action through the
inbox API, the journey's alert events through the consumer's own handler (as the journeys
topic delivers them, at the action's time and with the next `seq`, as the journey publishes
them). The echo confirms the coordinator's history row and leaves the version they hold; a
change the journey makes itself is news. The whole round trip through Kafka and Temporal is
tests/notifications/alerts/test_roundtrip.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.notifications.effects import apply_event
from shared.db import unit_of_work
from shared.settings import Settings
from tests.notifications.alert_support import (
    alert_event,
    coordinator,
    new_patient,
    put_alert,
    rows,
)


class Alert:
    """One open looping alert (seq 1, version 1) and one coordinator acting on it."""

    def __init__(
        self, s: Settings, sessions: async_sessionmaker, client: httpx.AsyncClient
    ) -> None:
        self.s, self.sessions, self.client = s, sessions, client
        self.patient = new_patient()
        self.me = f"coord-{uuid.uuid4().hex[:6]}"
        self.id = ""
        self.seq = 1

    async def raise_it(self, **kw: Any) -> Alert:
        spec: dict[str, Any] = dict(
            kind="looping", severity="high", status="open", at=datetime.now(UTC) - timedelta(days=1)
        )
        self.id = await put_alert(self.s, self.sessions, patient_id=self.patient, **{**spec, **kw})
        return self

    async def act(
        self, action: str, body: dict[str, Any] | None = None, version: int | None = None
    ) -> httpx.Response:
        h = coordinator(self.s, user=self.me)
        if version is not None:
            h["If-Match"] = f'W/"{version}"'
        return await self.client.post(f"/alerts/{self.id}/{action}", json=body, headers=h)

    async def action_times(self) -> list[datetime]:
        """When each action published so far was taken (the time the journey keeps)."""
        got = await rows(
            self.sessions, "SELECT payload FROM outbox WHERE key = :k ORDER BY seq", k=self.patient
        )
        return [datetime.fromisoformat(r.payload["time"]) for r in got]

    async def journey(
        self,
        change: str,
        *,
        status: str,
        at: datetime,
        assignee: str | None = None,
        severity: str = "high",
        seq: int | None = None,
    ) -> None:
        """The journey's alert event for `change` (the next seq unless told)."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        event, data = alert_event(
            patient_id=self.patient,
            alert_id=self.id,
            change=change,
            kind="looping",
            severity=severity,
            status=status,
            assignee=assignee,
            seq=seq,
            at=at,
        )
        async with unit_of_work(self.sessions) as session:
            await apply_event(session=session, event=event, data=data, settings=self.s)

    async def row(self) -> Any:
        [row] = await rows(
            self.sessions,
            "SELECT status, assignee, severity, seq, version FROM alert WHERE alert_id = :a",
            a=self.id,
        )
        return row

    async def history(self) -> list[tuple[Any, ...]]:
        got = await rows(
            self.sessions,
            "SELECT change, status, actor, seq FROM alert_history "
            "WHERE alert_id = :a ORDER BY at, id",
            a=self.id,
        )
        return [tuple(h) for h in got]


@pytest.fixture
async def alert(
    infra: Settings,
    notifications_sessions: async_sessionmaker,
    notifications_client: httpx.AsyncClient,
) -> Alert:
    return await Alert(infra, notifications_sessions, notifications_client).raise_it()


class TestTheEchoConfirms:
    async def test_acknowledge_then_resolve_with_the_etag_the_api_gave(self, alert):
        r = await alert.act("acknowledge", version=1)
        assert (r.status_code, r.headers["etag"]) == (200, 'W/"2"')
        [acked_at] = await alert.action_times()
        await alert.journey("acknowledged", status="acknowledged", assignee=alert.me, at=acked_at)
        row = await alert.row()
        assert (row.status, row.seq, row.version) == ("acknowledged", 2, 2)
        r = await alert.act("resolve", {"resolution": "contacted-person"}, version=2)
        assert r.status_code == 200, r.text
        assert r.headers["etag"] == 'W/"3"'
        resolved_at = (await alert.action_times())[1]
        await alert.journey("resolved", status="resolved", assignee=alert.me, at=resolved_at)
        row = await alert.row()
        assert (row.status, row.seq, row.version) == ("resolved", 3, 3)
        # one row per action, each confirmed by the journey's seq
        assert await alert.history() == [
            ("raised", "open", "journey", 1),
            ("acknowledged", "acknowledged", alert.me, 2),
            ("resolved", "resolved", alert.me, 3),
        ]

    async def test_a_redelivered_echo_changes_nothing(self, alert):
        await alert.act("acknowledge")
        [at] = await alert.action_times()
        await alert.journey("acknowledged", status="acknowledged", assignee=alert.me, at=at)
        await alert.journey("acknowledged", status="acknowledged", assignee=alert.me, at=at, seq=2)
        row = await alert.row()
        assert (row.seq, row.version) == (2, 2)
        assert len(await alert.history()) == 2

    async def test_an_echo_overtaken_by_the_next_action_does_not_flip_the_row_back(self, alert):
        await alert.act("acknowledge", version=1)
        until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
        r = await alert.act("snooze", {"until": until.isoformat()}, version=2)
        assert r.headers["etag"] == 'W/"3"'
        acked_at, snoozed_at = await alert.action_times()
        await alert.journey("acknowledged", status="acknowledged", assignee=alert.me, at=acked_at)
        row = await alert.row()
        assert (row.status, row.seq, row.version) == ("snoozed", 2, 3)
        await alert.journey("snoozed", status="snoozed", assignee=alert.me, at=snoozed_at)
        row = await alert.row()
        assert (row.status, row.seq, row.version) == ("snoozed", 3, 3)
        assert [h[2:] for h in await alert.history()] == [
            ("journey", 1),
            (alert.me, 2),
            (alert.me, 3),
        ]


class TestTheJourneysOwnChangesAreNews:
    @pytest.mark.parametrize(
        ("change", "status", "severity"),
        [
            ("escalated", "escalated", "urgent"),
            ("progressing", "progressing", "high"),
            ("resolved", "resolved", "high"),
        ],
    )
    async def test_a_change_after_the_echo_moves_the_version(self, alert, change, status, severity):
        await alert.act("acknowledge", version=1)
        [at] = await alert.action_times()
        await alert.journey("acknowledged", status="acknowledged", assignee=alert.me, at=at)
        await alert.journey(
            change, status=status, assignee=alert.me, severity=severity, at=datetime.now(UTC)
        )
        row = await alert.row()
        assert (row.status, row.severity, row.seq, row.version) == (status, severity, 3, 3)
        r = await alert.act("assign", {"assignee": "me"}, version=2)
        assert r.status_code == 412, r.text
        assert r.json()["current_version"] == 3
        assert [h[0:3] for h in await alert.history()][-1] == (change, status, "journey")

    async def test_a_snoozed_alert_the_journey_reopens_is_news(self, alert):
        until = (datetime.now(UTC) + timedelta(hours=4)).replace(microsecond=0)
        await alert.act("snooze", {"until": until.isoformat()}, version=1)
        [at] = await alert.action_times()
        await alert.journey("snoozed", status="snoozed", at=at)
        assert (await alert.row()).version == 2
        await alert.journey("reopened", status="open", at=until)
        row = await alert.row()
        assert (row.status, row.version) == ("open", 3)

    async def test_an_escalation_before_the_journey_heard_of_the_action(self, alert):
        # the journey escalated (seq 2) before the acknowledgement reached it, then applied it
        await alert.act("acknowledge", version=1)
        [at] = await alert.action_times()
        await alert.journey(
            "escalated", status="escalated", severity="urgent", at=at + timedelta(milliseconds=5)
        )
        row = await alert.row()
        assert (row.status, row.version) == ("escalated", 3)
        await alert.journey(
            "acknowledged", status="acknowledged", assignee=alert.me, severity="urgent", at=at
        )
        row = await alert.row()
        assert (row.status, row.severity, row.seq, row.version) == ("acknowledged", "urgent", 3, 4)
        assert [h[0:3] for h in await alert.history()] == [
            ("raised", "open", "journey"),
            ("acknowledged", "acknowledged", alert.me),
            ("escalated", "escalated", "journey"),
        ]

    async def test_an_action_the_inbox_never_took_is_the_journeys_change(self, alert):
        # e.g. published by another inbox: no coordinator row here to confirm
        await alert.journey(
            "acknowledged", status="acknowledged", assignee="coord-elsewhere", at=datetime.now(UTC)
        )
        row = await alert.row()
        assert (row.status, row.assignee, row.version) == ("acknowledged", "coord-elsewhere", 2)
        assert [h[0:3] for h in await alert.history()][-1] == (
            "acknowledged",
            "acknowledged",
            "journey",
        )
