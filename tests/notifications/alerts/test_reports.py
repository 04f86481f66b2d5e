"""The alert report's figures (alerts/reports.py, the dashboard's overview) from the real
notifications schema: referral events and journey alerts put in through the consumer's own
handler (services.notifications.effects.apply_event), then `overview` read on the same session.
Each test works in a transaction it rolls back, in a window of 2019 that no other test writes
to, with an ICS of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.alerts.reports import Median, overview
from services.notifications.effects import apply_event
from shared.db import make_engine, make_sessionmaker
from shared.events.envelope import make_event
from shared.events.referrals import (
    EVENT_FOR_STATE,
    HISTORY_SOURCE,
    SYNTHETIC_SOURCE,
    ReferralEventData,
    ReferralFlagged,
)
from shared.settings import Settings
from tests.notifications.alert_support import alert_event


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
async def sessions(infra: Settings):  # type: ignore[no-untyped-def]
    """Sessions on the notifications schema of the test database (real PostgreSQL)."""
    engine = make_engine(infra, "notifications")
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def session(sessions) -> AsyncIterator[AsyncSession]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        try:
            yield s
        finally:
            await s.rollback()


class Journey:
    """Referral events and alerts of one made-up ICS, through the consumer's handler."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session, self.settings = session, settings
        self.ics = f"ICS-T{uuid.uuid4().hex[:6].upper()}"
        self.patient = f"pt_{uuid.uuid4().hex[:16]}"

    async def referral(
        self, category: str, steps: list[tuple[str, datetime]], source: str | None = None
    ) -> str:
        rid = str(uuid.uuid4())
        previous = None
        for state, at in steps:
            data = EVENT_FOR_STATE[state](
                referral_id=rid,
                from_org="GP-T1",
                to_org="SVC-T1",
                to_service_id="svc-t",
                service_category=category,
                priority="routine",
                state=state,
                previous_state=previous,
            )
            await self.apply(make_event(data, subject=self.patient, time=at), data, source)
            previous = state
        return rid

    async def apply(self, event: Any, data: Any, source: str | None = None) -> None:
        if source:
            event = event.model_copy(update={"source": source})
        settings = self.settings.model_copy(update={"ics": self.ics})
        await apply_event(session=self.session, event=event, data=data, settings=settings)

    async def alert(
        self,
        kind: str,
        referral_ids: list[str],
        at: datetime,
        *,
        status: str = "open",
        change: str = "raised",
        seq: int = 1,
        alert_id: str | None = None,
    ) -> str:
        event, data = alert_event(
            patient_id=self.patient,
            kind=kind,
            referral_ids=referral_ids,
            at=at,
            status=status,
            change=change,
            seq=seq,
            alert_id=alert_id,
        )
        await self.apply(event, data)
        return str(data.alert_id)


class TestOverview:
    async def test_exact_figures_from_known_events_and_alerts(self, session, infra):
        j = Journey(session, infra)
        # May, June and July 2019 (UK months); "now" is 15 July 2019
        r1 = await j.referral(
            "pain_management_programme",
            [
                ("submitted", utc(2019, 5, 10, 9)),
                ("accepted", utc(2019, 5, 12, 9)),
                ("booked", utc(2019, 5, 14, 9)),
                ("attended", utc(2019, 5, 20, 9)),
            ],
        )
        # 00:30 on 1 June in London
        r2 = await j.referral(
            "msk_physiotherapy",
            [("submitted", utc(2019, 5, 31, 23, 30)), ("rejected", utc(2019, 6, 4, 23, 30))],
        )
        # returned, submitted again (it counts once, from its first submission), then seen
        r3 = await j.referral(
            "msk_physiotherapy",
            [
                ("submitted", utc(2019, 6, 10, 10)),
                ("returned", utc(2019, 6, 11, 10)),
                ("submitted", utc(2019, 6, 20, 10)),
                ("accepted", utc(2019, 6, 22, 10)),
                ("attended", utc(2019, 7, 1, 10)),
            ],
        )
        r4 = await j.referral("talking_therapies_ltc", [("submitted", utc(2019, 7, 1, 8))])
        # before the window (April), though seen within it
        r5 = await j.referral(
            "pain_management_programme",
            [("submitted", utc(2019, 4, 20, 9)), ("attended", utc(2019, 5, 5, 9))],
        )
        # after "now"
        await j.referral("pain_management_programme", [("submitted", utc(2019, 7, 20, 9))])
        # triaged only after "now": no triage figure yet
        r7 = await j.referral(
            "talking_therapies_ltc",
            [("submitted", utc(2019, 7, 10, 9)), ("accepted", utc(2019, 7, 16, 9))],
        )
        # a flag changes no state and is no triage decision
        flag = ReferralFlagged(
            referral_id=r4,
            from_org="GP-T1",
            to_org="SVC-T1",
            to_service_id="svc-t",
            service_category="talking_therapies_ltc",
            priority="routine",
            state="submitted",
            flag="service_withdrawn",
        )
        await j.apply(make_event(flag, subject=j.patient, time=utc(2019, 7, 2)), flag)

        await j.alert("stalled", [r4], utc(2019, 7, 16, 9))  # raised after now: not counted
        await j.alert("stalled", [r4], utc(2019, 7, 15, 9))
        # names r3 first, but r2 was submitted first: msk, June
        await j.alert("looping", [r3, r2], utc(2019, 6, 20, 11))
        await j.alert("looping", [r5, r1], utc(2019, 6, 1))  # starts in April: outside
        stall = await j.alert("stalled", [r7], utc(2019, 7, 12))
        await j.alert(
            "stalled",
            [r7],
            utc(2019, 7, 13),
            status="resolved",
            change="resolved",
            seq=2,
            alert_id=stall,
        )  # resolved, but it was raised
        await j.alert("safety", [r1], utc(2019, 6, 1))  # not a loop or a stall
        await j.alert("stalled", ["not-on-record"], utc(2019, 6, 1))  # unattributed
        await j.alert("looping", [r1], utc(2019, 6, 1))  # pain, May
        other = Journey(session, infra)  # another ICS's alert on the same referral
        await other.alert("stalled", [r1], utc(2019, 6, 1))

        o = await overview(session, ics=j.ics, months=3, now=utc(2019, 7, 15, 12))

        assert o.months == (date(2019, 5, 1), date(2019, 6, 1), date(2019, 7, 1))
        assert o.start == utc(2019, 4, 30, 23) and o.end == utc(2019, 7, 15, 12)
        assert o.referrals == 5  # r1, r2, r3, r4, r7
        assert (o.overall.loops, o.overall.stalls) == (2, 2)
        assert (o.overall.loops_per_1000, o.overall.stalls_per_1000) == (400.0, 400.0)
        assert {
            r.key: (r.referrals, r.loops, r.stalls, r.loops_per_1000, r.stalls_per_1000)
            for r in o.by_category
        } == {
            "msk_physiotherapy": (2, 1, 0, 500.0, 0.0),
            "pain_management_programme": (1, 1, 0, 1000.0, 0.0),
            "talking_therapies_ltc": (2, 0, 2, 0.0, 1000.0),
        }
        assert [
            (r.key, r.referrals, r.loops, r.stalls, r.loops_per_1000, r.stalls_per_1000)
            for r in o.by_month
        ] == [
            ("2019-05", 1, 1, 0, 1000.0, 0.0),
            ("2019-06", 2, 1, 0, 500.0, 0.0),
            ("2019-07", 2, 0, 2, 0.0, 1000.0),
        ]
        assert o.to_triage == Median(2.0, 3)  # r1 2 days, r2 4 days, r3 1 day
        assert o.to_treatment == Median(15.5, 2)  # r1 10 days, r3 21 days
        assert o.unattributed_alerts == 1

    async def test_a_window_with_nothing_in_it(self, session, infra):
        j = Journey(session, infra)
        o = await overview(session, ics=j.ics, months=2, now=utc(1999, 1, 15, 12))
        assert o.referrals == 0 and o.by_category == () and o.unattributed_alerts == 0
        assert o.overall.loops_per_1000 is None and o.overall.stalls_per_1000 is None
        assert [(r.key, r.referrals, r.loops_per_1000) for r in o.by_month] == [
            ("1998-12", 0, None),
            ("1999-01", 0, None),
        ]
        assert o.to_triage == Median(None, 0) and o.to_treatment == Median(None, 0)

    async def test_now_defaults_to_the_clock_and_twelve_months(self, session, infra):
        j = Journey(session, infra)
        before = datetime.now(UTC)
        o = await overview(session, ics=j.ics)
        assert len(o.months) == 12 and before <= o.end <= datetime.now(UTC)


class TestReferralHistory:
    async def rows(self, session: AsyncSession, referral_id: str) -> list[Any]:
        return list(
            (
                await session.exec(
                    text(  # type: ignore[call-overload]
                        "SELECT event_id, state, previous_state, service_category, patient_id, at "
                        "FROM referral_history WHERE referral_id = :r ORDER BY at"
                    ).bindparams(r=referral_id)
                )
            ).all()
        )

    async def test_every_state_change_once_even_when_redelivered(self, session, infra):
        j = Journey(session, infra)
        rid = str(uuid.uuid4())
        data: ReferralEventData = EVENT_FOR_STATE["accepted"](
            referral_id=rid,
            from_org="GP-T1",
            to_org="SVC-T1",
            to_service_id="svc-t",
            service_category="msk_physiotherapy",
            priority="routine",
            state="accepted",
            previous_state="submitted",
        )
        event = make_event(data, subject=j.patient, time=utc(2019, 3, 1, 9))
        await j.apply(event, data)
        await j.apply(event, data)
        rows = await self.rows(session, rid)
        assert [
            (r.event_id, r.state, r.previous_state, r.service_category, r.patient_id, r.at)
            for r in rows
        ] == [
            (event.id, "accepted", "submitted", "msk_physiotherapy", j.patient, utc(2019, 3, 1, 9))
        ]

    async def test_a_flag_is_not_a_state_change(self, session, infra):
        j = Journey(session, infra)
        rid = await j.referral("peer_support", [("submitted", utc(2019, 3, 1))])
        flag = ReferralFlagged(
            referral_id=rid,
            from_org="GP-T1",
            to_org="SVC-T1",
            to_service_id="svc-t",
            service_category="peer_support",
            priority="routine",
            state="submitted",
            flag="service_withdrawn",
        )
        await j.apply(make_event(flag, subject=j.patient, time=utc(2019, 3, 2)), flag)
        assert [r.state for r in await self.rows(session, rid)] == ["submitted"]

    @pytest.mark.parametrize("source", [SYNTHETIC_SOURCE, HISTORY_SOURCE])
    async def test_synthetic_and_imported_referrals_are_recorded_but_owe_nobody_a_message(
        self, session, infra, source
    ):
        j = Journey(session, infra)
        real = await j.referral(
            "peer_support", [("submitted", utc(2019, 3, 1)), ("accepted", utc(2019, 3, 2))]
        )
        made_up = await j.referral(
            "peer_support",
            [("submitted", utc(2019, 3, 1)), ("accepted", utc(2019, 3, 2))],
            source=source,
        )
        for rid in (real, made_up):
            assert [r.state for r in await self.rows(session, rid)] == ["submitted", "accepted"]
        messages = dict(
            (
                await session.exec(
                    text(  # type: ignore[call-overload]
                        "SELECT referral_id, count(*) FROM message WHERE referral_id IN (:a, :b) "
                        "GROUP BY referral_id"
                    ).bindparams(a=real, b=made_up)
                )
            ).all()
        )
        assert messages == {real: 2}  # the receiving team and the referrer; nobody for made_up
        index = (
            await session.exec(
                text(  # type: ignore[call-overload]
                    "SELECT state FROM referral_index WHERE referral_id = :r"
                ).bindparams(r=made_up)
            )
        ).one()
        assert index.state == "accepted"
