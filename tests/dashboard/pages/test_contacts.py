"""The person's contacts outside referrals on the dashboard (#17): drawn on the alert page's
timeline and listed beside it, an audited read of patient data for whoever may see the
alert, never for others; and unplanned contacts per 1,000 people on the overview.

In-process against the notifications app and the real database; contacts are put in through
the notifications consumer's own handler; the journey (package fixture) is the running
stack's."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.notifications.effects import apply_event
from shared.db import unit_of_work
from shared.events.registry import REGISTRY
from tests.dashboard.page_support import EVIL, alert_url, sign_in
from tests.notifications.alert_support import new_patient, put_alert, rows
from tests.notifications.encounters.support import encounter_event


async def put_contact(settings: Any, sessions: Any, patient: str, **kw: Any) -> str:
    event = encounter_event(patient=patient, **kw)
    async with unit_of_work(sessions) as session:
        await apply_event(
            session=session, event=event, data=REGISTRY.parse(event), settings=settings
        )
    return str(event.data["encounter_id"])


def contact_titles(text: str) -> list[str]:
    return re.findall(r'<g class="contact contact--[a-z]+"[^>]*><title>([^<]*)</title>', text)


def table(text: str) -> list[list[str]]:
    m = re.search(r'<table class="table" id="contacts-table">.*?</table>', text, re.S)
    assert m, "no contacts table"
    body = m.group(0).split("<tbody>")[1]
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", tr, re.S)]
        for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


class TestContactsOnTheAlertPage:
    async def test_the_timeline_marks_them_and_the_table_lists_them(
        self, web, journey, settings, sessions
    ):
        p = journey.patient_id
        today = datetime.now(UTC).replace(hour=10, minute=30, second=0, microsecond=0)
        ae = today - timedelta(days=3)
        gp = today - timedelta(days=1)
        await put_contact(settings, sessions, p, started_at=ae)
        await put_contact(settings, sessions, p, kind="gp_appointment", planned=True, started_at=gp)
        await put_contact(settings, sessions, p, kind="crisis_team", status="cancelled")
        await sign_in(web)
        page = await web.get(alert_url(journey.alert_id))
        assert page.status_code == 200, page.text
        figure = re.search(r'<figure id="timeline".*?</figure>', page.text, re.S)
        assert figure
        day = lambda at: f"{at.day} {at:%b %Y}"  # noqa: E731 (UK day: 10:30 UTC is that day)
        assert sorted(contact_titles(figure.group(0))) == sorted(
            [
                f"A&amp;E attendance, {day(ae)}, unplanned",
                f"GP appointment, {day(gp)}, planned",
            ]
        )
        assert ">Contacts outside referrals</text>" in figure.group(0)
        assert "a filled diamond is unplanned, an open circle planned" in figure.group(0)
        assert "2 contacts with care outside referrals: 1 unplanned (1 A&amp;E attendance)" in (
            figure.group(0)
        )
        rows_ = table(page.text)
        assert [r[1:] for r in rows_] == [
            ["A&amp;E attendance", "unplanned", "finished", "RXX01"],
            ["GP appointment", "planned", "finished", "RXX01"],
        ]
        assert "Crisis team contact" not in page.text  # cancelled: left out

    async def test_reading_them_is_audited_for_the_person(self, web, journey, settings, sessions):
        await put_contact(settings, sessions, journey.patient_id, status="entered_in_error")
        [indexed] = await rows(
            sessions,
            "SELECT count(*) AS n, count(*) FILTER (WHERE status IN ('cancelled', "
            "'entered_in_error')) AS hidden FROM contact_index WHERE patient_id = :p",
            p=journey.patient_id,
        )
        await sign_in(web, "demo-jordan")
        before = datetime.now(UTC)
        page = await web.get(alert_url(journey.alert_id))
        assert page.status_code == 200
        audited = await rows(
            sessions,
            "SELECT actor, action, detail FROM audit_log WHERE patient_id = :p "
            "AND resource_type = 'Contacts' AND at >= :t",
            p=journey.patient_id,
            t=before,
        )
        assert [(a.actor, a.action, a.detail) for a in audited] == [
            ("demo-jordan", "read", f"dashboard timeline: {indexed.n} contacts")
        ]  # every row of the index read, those not shown (entered in error) included
        shown = table(page.text) if 'id="contacts-table"' in page.text else []
        assert len(shown) == indexed.n - indexed.hidden and indexed.hidden >= 1

    async def test_a_person_with_no_contacts_is_told_so_and_the_read_still_audited(
        self, web, settings, sessions
    ):
        patient = new_patient()
        alert_id = await put_alert(settings, sessions, patient_id=patient, kind="looping")
        await sign_in(web)
        page = await web.get(alert_url(alert_id))
        assert page.status_code == 200
        assert "No contacts with care outside referrals are recorded for this person." in page.text
        assert 'id="contacts-table"' not in page.text
        audited = await rows(
            sessions,
            "SELECT detail FROM audit_log WHERE patient_id = :p AND resource_type = 'Contacts'",
            p=patient,
        )
        assert [a.detail for a in audited] == ["dashboard timeline: 0 contacts"]

    async def test_contacts_show_without_a_journey_in_the_table(self, web, settings, sessions):
        patient = new_patient()
        alert_id = await put_alert(settings, sessions, patient_id=patient, kind="looping")
        await put_contact(settings, sessions, patient, kind="nhs_111")
        await sign_in(web)
        page = await web.get(alert_url(alert_id))
        assert [r[1] for r in table(page.text)] == ["NHS 111 contact"]

    async def test_those_who_may_not_see_the_alert_see_no_contacts_and_nothing_is_read(
        self, web, settings, sessions
    ):
        patient = new_patient()
        alert_id = await put_alert(settings, sessions, patient_id=patient, kind="looping")
        await put_contact(settings, sessions, patient)
        for user in ("demo-lee", "demo-sam", "demo-gita"):
            await sign_in(web, user)
            page = await web.get(alert_url(alert_id))
            assert page.status_code == 403, user
            assert "A&amp;E attendance" not in page.text and "contacts-table" not in page.text
        audited = await rows(
            sessions,
            "SELECT 1 FROM audit_log WHERE patient_id = :p AND resource_type = 'Contacts'",
            p=patient,
        )
        assert audited == []

    async def test_markup_in_the_data_is_shown_as_text(self, web, settings, sessions):
        patient = new_patient()
        alert_id = await put_alert(settings, sessions, patient_id=patient, kind="looping")
        await put_contact(settings, sessions, patient, encounter_id=f"e{EVIL}"[:64])
        await sign_in(web)
        page = await web.get(alert_url(alert_id))
        assert page.status_code == 200 and EVIL not in page.text


class TestUnplannedContactsOnTheOverview:
    FIGURE = re.compile(
        r'id="figure-contacts">([^<]*)</dd><dd class="secondary">(\d+) unplanned contacts? '
        r"among (\d+) (?:people|person)"
    )

    async def figures(self, web: Any) -> tuple[str, int, int]:
        page = await web.get("/dashboard/overview")
        assert page.status_code == 200, page.text
        m = self.FIGURE.search(page.text)
        assert m, "no unplanned contacts figure"
        return m.group(1), int(m.group(2)), int(m.group(3))

    async def test_a_new_person_with_two_unplanned_contacts_moves_the_figure(
        self, web, settings, sessions
    ):
        await sign_in(web, "demo-lee")
        _, contacts, people = await self.figures(web)
        patient = f"pt_{uuid.uuid4().hex[:16]}"
        yesterday = datetime.now(UTC) - timedelta(days=1)
        await put_contact(settings, sessions, patient, started_at=yesterday)
        await put_contact(settings, sessions, patient, kind="nhs_111", started_at=yesterday)
        # neither counted: cancelled, and long before the period
        await put_contact(settings, sessions, patient, status="cancelled", started_at=yesterday)
        await put_contact(settings, sessions, patient, started_at=yesterday - timedelta(days=400))
        rate, contacts_after, people_after = await self.figures(web)
        assert (contacts_after, people_after) == (contacts + 2, people + 1)
        # the figure is the count per 1,000 of the people, as the page writes figures
        expected = contacts_after * 1000 / people_after
        assert rate == f"{expected:,.1f}".rstrip("0").rstrip(".")

    async def test_it_says_what_it_counts_and_against_whom(self, web, settings, sessions):
        await put_contact(settings, sessions, new_patient(), kind="crisis_team")
        await sign_in(web, "demo-casey")
        page = await web.get("/dashboard/overview")
        text = re.sub(r"\s+", " ", page.text)
        assert '<h2 id="contacts-heading">Unplanned contacts</h2>' in text
        assert "For the last 182 days" in text
        assert "People are those this deployment knows had a journey in the period" in text
        assert "That is not the ICS's population" in text
        assert "People with more than 3 unplanned contacts" in text
        kinds = re.search(r'<table class="table data-table" id="table-contacts">.*?</table>', text)
        assert kinds and '<th scope="row">Crisis team contact</th>' in kinds.group(0)
