"""Unplanned contacts per 1,000 people (encounters/reports.py) from the real notifications
schema: referral and encounter events put in through the consumer's own handler
(services.notifications.effects.apply_event), then `unplanned_contacts` read on the same
session. Each test works in a transaction it rolls back, in a period of 2016-2017 that no
other test writes to."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.effects import apply_event
from services.notifications.encounters.reports import unplanned_contacts
from shared.events.envelope import CloudEvent, make_event
from shared.events.referrals import EVENT_FOR_STATE
from shared.events.registry import REGISTRY
from shared.settings import Settings
from tests.notifications.encounters.support import encounter_event

NOW = datetime(2017, 7, 1, 12, 0, tzinfo=UTC)  # the period: 182 days from 31 Dec 2016, 12:00


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
async def session(notifications_sessions) -> AsyncIterator[AsyncSession]:  # type: ignore[no-untyped-def]
    async with notifications_sessions() as s:
        try:
            yield s
        finally:
            await s.rollback()


class Feed:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session, self.settings = session, settings

    async def apply(self, event: CloudEvent) -> None:
        await apply_event(
            session=self.session, event=event, data=REGISTRY.parse(event), settings=self.settings
        )

    async def referral(self, patient: str, steps: list[tuple[str, datetime]]) -> None:
        rid, previous = str(uuid.uuid4()), None
        for state, at in steps:
            data = EVENT_FOR_STATE[state](
                referral_id=rid,
                from_org="GP-T1",
                to_org="SVC-T1",
                to_service_id="svc-t",
                service_category="pain_management_programme",
                priority="routine",
                state=state,
                previous_state=previous,
            )
            await self.apply(make_event(data, subject=patient, time=at))
            previous = state

    async def contact(self, patient: str, kind: str, at: datetime, **kw: object) -> str:
        event = encounter_event(patient=patient, kind=kind, started_at=at, **kw)  # type: ignore[arg-type]
        await self.apply(event)
        return str(event.data["encounter_id"])


def pid() -> str:
    return f"pt_{uuid.uuid4().hex[:16]}"


class TestUnplannedContactsPerThousandPeople:
    async def test_a_known_set(self, session, infra):
        f = Feed(session, infra)
        p1, p2, p3, p4, p5, p6 = (pid() for _ in range(6))
        # p1: referred before the period and still waiting (open when it began): in the
        # denominator; 3 A&E attendances and 1 NHS 111 contact in the period: 4 unplanned
        await f.referral(p1, [("submitted", utc(2016, 11, 1))])
        for month in (1, 2, 3):
            await f.contact(p1, "ae_attendance", utc(2017, month, 10))
        await f.contact(p1, "nhs_111", utc(2017, 4, 2))
        # p2: referred and not accepted before the period, one contact before it: in neither
        await f.referral(p2, [("submitted", utc(2016, 10, 1)), ("rejected", utc(2016, 11, 15))])
        await f.contact(p2, "ae_attendance", utc(2016, 6, 1))
        # p3: referred in the period; a planned GP appointment (in the denominator, not the
        # numerator) and a same-day one the practice called unplanned: 1 unplanned
        await f.referral(p3, [("submitted", utc(2017, 3, 1))])
        await f.contact(p3, "gp_appointment", utc(2017, 3, 20), planned=True)
        await f.contact(p3, "gp_appointment", utc(2017, 5, 2), planned=False)
        # p4: no referral; a crisis team contact the source called planned (crisis contacts
        # are unplanned whatever the source says): 1; an out-of-hours contact missed: 0
        await f.contact(p4, "crisis_team", utc(2017, 6, 30), planned=True)
        await f.contact(p4, "out_of_hours", utc(2017, 6, 1), status="did_not_attend")
        # p5: an A&E attendance cancelled, another entered in error at its second revision:
        # nothing happened, so in neither
        await f.contact(p5, "ae_attendance", utc(2017, 2, 1), status="cancelled")
        eid = await f.contact(p5, "ae_attendance", utc(2017, 2, 2), status="arrived")
        await f.contact(
            p5,
            "ae_attendance",
            utc(2017, 2, 2),
            encounter_id=eid,
            revision=2,
            status="entered_in_error",
        )
        # p6: a GP appointment booked after the period ends: in neither
        await f.contact(p6, "gp_appointment", utc(2017, 7, 10), planned=True, status="booked")

        got = await unplanned_contacts(session, days=182, frequent_above=3, now=NOW)
        # people: p1, p3, p4 = 3 (with a referral: p1, p3; with a contact: p1, p3, p4)
        assert (got.people.total, got.people.with_referral, got.people.with_contact) == (3, 2, 3)
        # unplanned: p1 4 + p3 1 + p4 1 = 6; 6 * 1000 / 3 = 2000 per 1,000 people
        assert (got.unplanned, got.per_1000) == (6, 2000.0)
        # by kind: A&E 3 (3000 / 3 = 1000), NHS 111, crisis team, GP 1 each (1000 / 3)
        assert [(k.kind, k.contacts, k.people) for k in got.by_kind] == [
            ("ae_attendance", 3, 1),
            ("nhs_111", 1, 1),
            ("crisis_team", 1, 1),
            ("gp_appointment", 1, 1),
        ]
        assert got.by_kind[0].per_1000 == 1000.0
        assert got.by_kind[1].per_1000 == pytest.approx(333.333, abs=0.001)
        # more than three unplanned contacts: p1 alone, 1 of the 3 with any = 33.3%
        assert (got.people_with_unplanned, got.frequent_people) == (3, 1)
        assert got.frequent_share == pytest.approx(100 / 3)
        assert (got.start, got.end, got.days) == (NOW - timedelta(days=182), NOW, 182)

    async def test_the_period_decides_what_counts(self, session, infra):
        f = Feed(session, infra)
        p = pid()
        start = NOW - timedelta(days=30)
        await f.contact(p, "ae_attendance", start - timedelta(seconds=1))  # just before
        await f.contact(p, "ae_attendance", start)  # the first instant counts
        await f.contact(p, "ae_attendance", NOW - timedelta(seconds=1))
        await f.contact(p, "ae_attendance", NOW)  # the end is not in it
        got = await unplanned_contacts(session, days=30, frequent_above=3, now=NOW)
        # 2 contacts of 1 person: 2 * 1000 / 1 = 2000 per 1,000
        assert (got.people.total, got.unplanned, got.per_1000) == (1, 2, 2000.0)

    async def test_a_referral_ended_in_the_period_counts_its_person(self, session, infra):
        f = Feed(session, infra)
        await f.referral(pid(), [("submitted", utc(2016, 12, 1)), ("discharged", utc(2017, 1, 15))])
        got = await unplanned_contacts(session, days=182, frequent_above=3, now=NOW)
        # 1 person, 0 unplanned contacts: 0 per 1,000 (not "no figure")
        assert (got.people.total, got.people.with_referral, got.per_1000) == (1, 1, 0.0)

    async def test_nobody_in_the_period_is_no_figure(self, session):
        got = await unplanned_contacts(session, days=182, frequent_above=3, now=NOW)
        assert got.empty and got.per_1000 is None and got.by_kind == ()
