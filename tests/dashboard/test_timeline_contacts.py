"""The person's contacts outside referrals on the journey timeline
(services/notifications/dashboard/timeline_contacts.py, drawn by timeline_contacts_svg.py
inside timeline_svg.py): pure, so plain unit tests, many cases: which contacts become marks,
in which rows, with which words; planned and unplanned told apart by shape, not colour alone;
the summary; the SVG's rows, legend, titles and escaping; malformed input skipped."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifications.dashboard import timeline as T
from services.notifications.dashboard import timeline_contacts as C
from services.notifications.dashboard import timeline_contacts_svg as CS
from services.notifications.dashboard import timeline_svg as S
from services.notifications.encounters.repository import Contact
from shared.vocabulary import CONTACT_LABELS, ContactKind

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FEB_3 = datetime(2026, 2, 3, 10, 30, tzinfo=UTC)


def contact(
    encounter_id: str,
    kind: str = "ae_attendance",
    *,
    at: datetime | str | None = FEB_3,
    planned: Any = False,
    status: Any = "finished",
    org: Any = "RXX01",
) -> dict[str, Any]:
    return {
        "encounter_id": encounter_id,
        "contact_kind": kind,
        "planned": planned,
        "status": status,
        "started_at": at.isoformat() if isinstance(at, datetime) else at,
        "ended_at": None,
        "source_org": org,
    }


def ep(rid: str, category: str, days_ago: float) -> dict[str, Any]:
    return {
        "referral_id": rid,
        "category": category,
        "steps": [{"state": "submitted", "at": (NOW - timedelta(days=days_ago)).isoformat()}],
    }


def svg_of(tl: T.Timeline, prefix: str = "tl") -> str:
    return str(S.render_svg(tl, id_prefix=prefix))


def contact_groups(svg: str) -> list[str]:
    return re.findall(r'<g class="contact contact--[a-z]+".*?</g>', svg)


def titles(svg: str) -> list[str]:
    return re.findall(r"<title>([^<]*)</title>", svg)


class TestMarks:
    def test_an_ae_attendance_reads_as_the_vocabulary_says(self):
        [lane] = C.contact_lanes([contact("e1")])
        [m] = lane.marks
        assert (lane.kind, lane.label) == ("ae_attendance", "A&E attendance")
        assert m.title() == "A&E attendance, 3 Feb 2026, unplanned"
        assert (m.unplanned, m.happened, m.planning, m.source_org) == (
            True,
            True,
            "unplanned",
            "RXX01",
        )

    @pytest.mark.parametrize("kind", list(ContactKind))
    def test_every_kind_is_labelled_from_the_vocabulary(self, kind):
        [lane] = C.contact_lanes([contact("e1", kind.value, planned=False)])
        assert lane.label == CONTACT_LABELS[kind]
        assert lane.marks[0].title() == f"{CONTACT_LABELS[kind]}, 3 Feb 2026, unplanned"

    @pytest.mark.parametrize(
        "kind,planned,words",
        [
            ("gp_appointment", True, "planned"),
            ("gp_appointment", False, "unplanned"),
            ("admission", True, "planned"),
            ("admission", False, "unplanned"),
            ("outpatient_appointment", True, "planned"),
            # an A&E, 111, out-of-hours or crisis contact is unplanned whatever the source said
            ("ae_attendance", True, "unplanned"),
            ("nhs_111", True, "unplanned"),
            ("out_of_hours", True, "unplanned"),
            ("crisis_team", True, "unplanned"),
        ],
    )
    def test_planned_or_unplanned(self, kind, planned, words):
        [lane] = C.contact_lanes([contact("e1", kind, planned=planned)])
        assert lane.marks[0].planning == words

    @pytest.mark.parametrize("status", ["cancelled", "entered_in_error"])
    def test_cancelled_and_entered_in_error_contacts_are_not_drawn(self, status):
        assert C.contact_lanes([contact("e1", status=status)]) == ()
        tl = T.build([], now=NOW, contacts=[contact("e1", status=status)])
        assert tl.empty and tl.contacts == () and tl.contact_marks == []
        assert "contact" not in tl.summary

    @pytest.mark.parametrize(
        "status,suffix",
        [
            ("arrived", ""),
            ("in_progress", ""),
            ("finished", ""),
            ("booked", ", booked"),
            ("did_not_attend", ", did not attend"),
        ],
    )
    def test_a_contact_that_did_not_happen_says_why(self, status, suffix):
        [lane] = C.contact_lanes([contact("e1", "gp_appointment", planned=True, status=status)])
        assert lane.marks[0].title() == f"GP appointment, 3 Feb 2026, planned{suffix}"

    def test_the_day_is_the_uk_day(self):
        # 23:30 UTC on 31 May is 00:30 on 1 June in British Summer Time
        late = datetime(2026, 5, 31, 23, 30, tzinfo=UTC)
        [lane] = C.contact_lanes([contact("e1", at=late)])
        assert lane.marks[0].title() == "A&E attendance, 1 Jun 2026, unplanned"

    def test_a_row_per_kind_in_the_vocabulary_order_each_in_time_order(self):
        lanes = C.contact_lanes(
            [
                contact("g1", "gp_appointment", planned=True, at=FEB_3 + timedelta(days=2)),
                contact("a2", "ae_attendance", at=FEB_3 + timedelta(days=5)),
                contact("c1", "crisis_team", at=FEB_3),
                contact("a1", "ae_attendance", at=FEB_3),
                contact("x1", "walk_in_centre", at=FEB_3),
            ]
        )
        assert [lane.kind for lane in lanes] == [
            "ae_attendance",
            "crisis_team",
            "gp_appointment",
            "walk_in_centre",  # a kind this vocabulary does not know comes last, as itself
        ]
        assert [m.encounter_id for m in lanes[0].marks] == ["a1", "a2"]
        assert lanes[3].label == "Walk in centre"

    def test_the_same_encounter_twice_is_one_mark(self):
        lanes = C.contact_lanes([contact("e1"), contact("e1", status="arrived")])
        assert [m.status for lane in lanes for m in lane.marks] == ["finished"]

    def test_the_contact_index_rows_are_accepted_as_they_are(self):
        row = Contact("e1", 3, "nhs_111", False, "finished", FEB_3, None, "NHS111", "fhir")
        [lane] = C.contact_lanes([row])
        assert lane.marks[0].title() == "NHS 111 contact, 3 Feb 2026, unplanned"
        assert lane.marks[0].source_org == "NHS111"


class TestMalformedContacts:
    @pytest.mark.parametrize(
        "bad",
        [
            None,
            42,
            "text",
            {},
            contact("", "ae_attendance"),
            contact("e1", ""),
            contact("e1", at=None),
            contact("e1", at="not a time"),
            contact("e1", planned="false"),  # a string is not a boolean
            contact("e1", planned=None),
            contact("e1", status=None),
            contact("e1", status="unheard_of"),
            {**contact("e1"), "encounter_id": 7},
            {**contact("e1"), "contact_kind": ["ae_attendance"]},
        ],
    )
    def test_an_entry_the_timeline_cannot_use_is_skipped(self, bad):
        lanes = C.contact_lanes([bad, contact("good")])
        assert [m.encounter_id for lane in lanes for m in lane.marks] == ["good"]

    def test_none_or_nothing_is_no_contacts(self):
        for given in (None, [], ()):
            assert C.contact_lanes(given) == ()

    def test_a_naive_time_is_utc_and_a_missing_org_is_blank(self):
        [lane] = C.contact_lanes([contact("e1", at="2026-02-03T10:30:00", org=None)])
        assert lane.marks[0].at == FEB_3 and lane.marks[0].source_org == ""


class TestSummary:
    def test_no_contacts_adds_nothing_to_the_journey_summary(self):
        plain = T.build([ep("r1", "msk_physiotherapy", 20)], now=NOW)
        with_none = T.build([ep("r1", "msk_physiotherapy", 20)], now=NOW, contacts=[])
        assert plain.summary == with_none.summary and "contact" not in plain.summary

    def test_unplanned_planned_and_missed_are_counted_apart_by_kind(self):
        tl = T.build(
            [ep("r1", "msk_physiotherapy", 20)],
            now=NOW,
            contacts=[
                contact("a1"),
                contact("a2", at=FEB_3 + timedelta(days=1)),
                contact("n1", "nhs_111"),
                contact("c1", "crisis_team"),
                contact("g1", "gp_appointment", planned=True),
                contact("g2", "gp_appointment", planned=True, status="did_not_attend"),
                contact("g3", "gp_appointment", planned=True, status="cancelled"),
            ],
        )
        assert tl.summary.endswith(
            " 6 contacts with care outside referrals: 4 unplanned (2 A&E attendances, "
            "1 NHS 111 contact, 1 crisis team contact), 1 planned and 1 booked or missed."
        )
        assert tl.summary.startswith("1 referral to 1 kind of service")

    @pytest.mark.parametrize(
        "contacts,sentence",
        [
            (
                [contact("a1")],
                "1 contact with care outside referrals: 1 unplanned (1 A&E attendance).",
            ),
            (
                [contact("g1", "gp_appointment", planned=True)],
                "1 contact with care outside referrals: 1 planned.",
            ),
            (
                [contact("h1", "admission", planned=False), contact("h2", "admission")],
                "2 contacts with care outside referrals: 2 unplanned (2 hospital admissions).",
            ),
            (
                [
                    contact("o1", "outpatient_appointment", planned=True, status="booked"),
                    contact("o2", "outpatient_appointment", planned=True),
                ],
                "2 contacts with care outside referrals: 1 planned and 1 booked or missed.",
            ),
        ],
    )
    def test_sentences(self, contacts, sentence):
        assert C.contacts_summary(C.contact_lanes(contacts)) == sentence

    def test_contacts_alone_still_make_a_timeline(self):
        tl = T.build(None, now=NOW, contacts=[contact("a1")])
        assert not tl.empty and tl.tracks == []
        assert tl.summary == (
            "No referrals are recorded in this journey yet. 1 contact with care outside "
            "referrals: 1 unplanned (1 A&E attendance)."
        )


class TestTimeSpan:
    def test_the_timeline_stretches_to_its_earliest_contact(self):
        old = NOW - timedelta(days=100)
        tl = T.build([ep("r1", "msk_physiotherapy", 20)], now=NOW, contacts=[contact("a", at=old)])
        assert tl.start < old < NOW < tl.end

    def test_and_to_a_booked_appointment_after_today(self):
        later = NOW + timedelta(days=10)
        tl = T.build(
            [ep("r1", "msk_physiotherapy", 20)],
            now=NOW,
            contacts=[contact("g", "gp_appointment", planned=True, status="booked", at=later)],
        )
        assert tl.end > later

    def test_a_hidden_contact_does_not_stretch_it(self):
        old = NOW - timedelta(days=400)
        tl = T.build(
            [ep("r1", "msk_physiotherapy", 20)],
            now=NOW,
            contacts=[contact("a", at=old, status="entered_in_error")],
        )
        assert tl.start > NOW - timedelta(days=21)


class TestTheSvg:
    def journey(self) -> T.Timeline:
        return T.build(
            [ep("r1", "msk_physiotherapy", 40), ep("r2", "pain_management_programme", 10)],
            now=NOW,
            contacts=[
                contact("a1"),
                contact("a2", at=FEB_3 + timedelta(days=9)),
                contact("n1", "nhs_111", at=FEB_3 + timedelta(days=2)),
                contact("g1", "gp_appointment", planned=True, at=FEB_3 - timedelta(days=20)),
                contact("g2", "gp_appointment", planned=True, status="booked", at=NOW),
                contact("x1", "crisis_team", status="cancelled"),
            ],
        )

    def test_each_shown_contact_is_one_mark_with_its_words_as_title(self):
        svg = svg_of(self.journey())
        groups = contact_groups(svg)
        assert len(groups) == 5  # the cancelled crisis contact is not drawn
        assert "Crisis team contact" not in svg
        got = [re.search(r"<title>([^<]*)</title>", g).group(1) for g in groups]  # type: ignore[union-attr]
        assert sorted(got) == sorted(
            [
                "A&amp;E attendance, 3 Feb 2026, unplanned",
                "A&amp;E attendance, 12 Feb 2026, unplanned",
                "NHS 111 contact, 5 Feb 2026, unplanned",
                "GP appointment, 14 Jan 2026, planned",
                "GP appointment, 2 Mar 2026, planned, booked",
            ]
        )

    def test_unplanned_is_a_filled_diamond_and_planned_an_open_circle(self):
        svg = svg_of(self.journey())
        for g in contact_groups(svg):
            if "contact--unplanned" in g:
                assert "<path d=" in g and "<circle" not in g and 'fill="#ffffff"' not in g
            else:
                assert "<circle" in g and "<path d=" not in g and 'fill="#ffffff"' in g

    def test_a_contact_that_did_not_happen_has_a_dashed_outline_and_the_rest_do_not(self):
        for g in contact_groups(svg_of(self.journey())):
            assert ("stroke-dasharray" in g) == ("booked" in g)

    def test_a_row_per_kind_labelled_in_words_under_a_header_with_a_legend(self):
        svg = svg_of(self.journey())
        words = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
        assert "Contacts outside referrals" in words
        for label in ("A&amp;E attendance", "NHS 111 contact", "GP appointment"):
            assert label in words
        # the legend: each shape beside its word
        legend = re.search(r'<g class="contact-legend">.*?</g>', svg).group(0)  # type: ignore[union-attr]
        assert [w for w in re.findall(r">([^<]+)</text>", legend)] == [
            "unplanned",
            "planned",
            "booked or missed",
        ]
        assert "<path d=" in legend and legend.count("<circle") == 2

    def test_the_contacts_rows_add_to_the_height_and_sit_under_the_referrals(self):
        with_contacts = svg_of(self.journey())
        without = svg_of(T.build([ep("r1", "msk_physiotherapy", 40), ep("r2", "x", 10)], now=NOW))
        h = lambda s: float(re.search(r'viewBox="0 0 960 ([0-9.]+)"', s).group(1))  # noqa: E731
        # three kinds shown (A&E, NHS 111, GP): the header and three rows
        assert h(with_contacts) - h(without) == CS.HEADER + 3 * CS.ROW
        header_y = float(
            re.search(
                r'<text x="6" y="([0-9.]+)"[^>]*>Contacts outside referrals', with_contacts
            ).group(1)  # type: ignore[union-attr]
        )
        referral_ys = [
            float(y) for y in re.findall(r'y="([0-9.]+)"[^>]*>Referral \d', with_contacts)
        ]
        assert referral_ys and max(referral_ys) < header_y

    def test_marks_sit_at_their_time_left_to_right(self):
        svg = svg_of(self.journey())
        xs = {}
        for g in contact_groups(svg):
            title = re.search(r"<title>([^<]*)</title>", g).group(1)  # type: ignore[union-attr]
            m = re.search(r'(?:cx="|d="M)([0-9.]+)', g)
            xs[title] = float(m.group(1))  # type: ignore[union-attr]
        order = sorted(xs, key=xs.get)  # type: ignore[arg-type]
        assert order[0].startswith("GP appointment, 14 Jan")
        assert order[-1].startswith("GP appointment, 2 Mar")

    def test_contacts_without_referrals_are_drawn_not_the_empty_sentence(self):
        svg = svg_of(T.build([], now=NOW, contacts=[contact("a1")]))
        assert len(contact_groups(svg)) == 1
        assert 'text-anchor="middle" fill="#212b32">No referrals' not in svg
        assert "No referrals are recorded in this journey yet." in svg  # in the description

    def test_the_description_tells_the_contacts_too(self):
        tl = self.journey()
        svg = svg_of(tl, "j")
        assert f'<desc id="j-desc">{tl.summary.replace("&", "&amp;")}</desc>' in svg
        assert "3 unplanned (2 A&amp;E attendances, 1 NHS 111 contact)" in svg

    def test_every_text_that_came_from_data_is_escaped(self):
        evil = '"><script>alert(1)</script>'
        tl = T.build([], now=NOW, contacts=[contact(f"e{evil}", f"kind{evil}")])
        svg = svg_of(tl)
        assert "<script>" not in svg
        assert "&lt;script&gt;" in svg
        assert 'data-encounter="e&#34;&gt;&lt;script&gt;' in svg

    def test_no_contacts_draws_no_contact_rows(self):
        svg = svg_of(T.build([ep("r1", "msk_physiotherapy", 40)], now=NOW))
        assert "Contacts outside referrals" not in svg and "contact-legend" not in svg


def test_many_contacts_are_drawn_whole():
    contacts = [
        contact(
            f"e{i}", list(ContactKind)[i % 7].value, at=NOW - timedelta(days=i), planned=i % 2 == 0
        )
        for i in range(150)
    ]
    tl = T.build([ep("r1", "msk_physiotherapy", 40)], now=NOW, contacts=contacts)
    svg = svg_of(tl)
    assert len(contact_groups(svg)) == 150 and len(tl.contacts) == 7
    assert svg.endswith("</svg>")
