"""The arithmetic of unplanned contacts per 1,000 people (encounters/reports.py `summarise`):
pure, with the sums written out beside each case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.notifications.config import contact_figures
from services.notifications.encounters.reports import (
    People,
    PersonContacts,
    per_thousand,
    summarise,
)

END = datetime(2026, 3, 2, 12, tzinfo=UTC)
START = END - timedelta(days=182)


def figures(people: People, counts: list[PersonContacts], frequent_above: int = 3):  # type: ignore[no-untyped-def]
    return summarise(
        start=START, end=END, people=people, counts=counts, frequent_above=frequent_above
    )


class TestPerThousand:
    @pytest.mark.parametrize(
        "count,people,expected",
        [(0, 10, 0.0), (1, 1000, 1.0), (7, 4, 1750.0), (3, 8, 375.0), (5, 0, None), (0, 0, None)],
    )
    def test_rates(self, count, people, expected):
        assert per_thousand(count, people) == expected

    def test_negative_counts_are_refused(self):
        with pytest.raises(ValueError):
            per_thousand(-1, 10)
        with pytest.raises(ValueError):
            per_thousand(1, -10)


class TestSummarise:
    def test_a_known_set(self):
        # 8 people had a journey in the period. Their unplanned contacts:
        #   p1: 3 A&E + 2 NHS 111 = 5 (more than three: frequent)
        #   p2: 4 crisis team          = 4 (frequent)
        #   p3: 1 A&E                  = 1
        #   p4: 2 out-of-hours + 1 GP  = 3 (not more than three)
        # total 5 + 4 + 1 + 3 = 13 unplanned contacts; 13 * 1000 / 8 = 1625 per 1,000 people;
        # A&E: 3 + 1 = 4 contacts by 2 people, 4 * 1000 / 8 = 500 per 1,000;
        # frequent: 2 of the 4 people with any unplanned contact = 50%
        counts = [
            PersonContacts("p1", "ae_attendance", 3),
            PersonContacts("p1", "nhs_111", 2),
            PersonContacts("p2", "crisis_team", 4),
            PersonContacts("p3", "ae_attendance", 1),
            PersonContacts("p4", "out_of_hours", 2),
            PersonContacts("p4", "gp_appointment", 1),
        ]
        f = figures(People(8, 6, 4), counts)
        assert (f.unplanned, f.per_1000, f.people.total) == (13, 1625.0, 8)
        assert (f.people_with_unplanned, f.frequent_people, f.frequent_share) == (4, 2, 50.0)
        assert f.days == 182 and (f.start, f.end) == (START, END)
        by_kind = {k.kind: (k.label, k.contacts, k.people, k.per_1000) for k in f.by_kind}
        assert by_kind == {
            "ae_attendance": ("A&E attendance", 4, 2, 500.0),
            "nhs_111": ("NHS 111 contact", 2, 1, 250.0),
            "out_of_hours": ("GP out-of-hours contact", 2, 1, 250.0),
            "crisis_team": ("Crisis team contact", 4, 1, 500.0),
            "gp_appointment": ("GP appointment", 1, 1, 125.0),
        }
        # in the vocabulary's order
        assert [k.kind for k in f.by_kind] == [
            "ae_attendance",
            "nhs_111",
            "out_of_hours",
            "crisis_team",
            "gp_appointment",
        ]

    @pytest.mark.parametrize(
        "above,frequent",
        # the person totals are 5, 4, 1 and 3
        [(0, 4), (1, 3), (2, 3), (3, 2), (4, 1), (5, 0)],
    )
    def test_the_frequent_threshold_is_more_than_not_at_least(self, above, frequent):
        counts = [
            PersonContacts("p1", "ae_attendance", 5),
            PersonContacts("p2", "ae_attendance", 4),
            PersonContacts("p3", "ae_attendance", 1),
            PersonContacts("p4", "ae_attendance", 3),
        ]
        f = figures(People(4, 0, 4), counts, frequent_above=above)
        assert f.frequent_people == frequent and f.frequent_share == frequent * 100 / 4

    def test_nobody_known_is_no_rate_rather_than_zero(self):
        f = figures(People(0, 0, 0), [])
        assert f.empty and f.per_1000 is None and f.frequent_share is None
        assert f.unplanned == 0 and f.by_kind == ()

    def test_people_without_unplanned_contacts_make_a_rate_of_zero(self):
        # 5 people, none with an unplanned contact: 0 * 1000 / 5 = 0
        f = figures(People(5, 5, 0), [])
        assert f.per_1000 == 0.0 and f.frequent_share is None and not f.empty

    def test_a_person_with_several_kinds_counts_once_among_people_with_any(self):
        counts = [PersonContacts("p1", k, 1) for k in ("ae_attendance", "nhs_111", "crisis_team")]
        f = figures(People(1, 0, 1), counts)
        # 3 contacts of 1 person: 3 * 1000 / 1 = 3000 per 1,000; 3 is not more than 3
        assert (f.unplanned, f.per_1000, f.people_with_unplanned, f.frequent_people) == (
            3,
            3000.0,
            1,
            0,
        )

    def test_zero_rows_are_ignored_and_an_unknown_kind_comes_last(self):
        counts = [
            PersonContacts("p1", "walk_in_centre", 2),
            PersonContacts("p2", "ae_attendance", 0),
            PersonContacts("p3", "nhs_111", 1),
        ]
        f = figures(People(10, 10, 3), counts)
        assert [(k.kind, k.label) for k in f.by_kind] == [
            ("nhs_111", "NHS 111 contact"),
            ("walk_in_centre", "Walk in centre"),
        ]
        assert f.people_with_unplanned == 2 and f.unplanned == 3

    def test_bad_input_is_refused(self):
        with pytest.raises(ValueError):
            figures(People(1, 1, 0), [PersonContacts("p", "ae_attendance", -1)])
        with pytest.raises(ValueError):
            figures(People(1, 1, 0), [], frequent_above=-1)
        with pytest.raises(ValueError):
            summarise(start=END, end=START, people=People(1, 1, 0), counts=[], frequent_above=3)


class TestSettings:
    def test_the_defaults_are_the_reports_six_months_and_more_than_three(self, monkeypatch):
        monkeypatch.delenv("WAYMARK_CONTACT_FIGURES_WINDOW_DAYS", raising=False)
        monkeypatch.delenv("WAYMARK_CONTACT_FIGURES_FREQUENT_ABOVE", raising=False)
        cf = contact_figures()
        assert (cf.window_days, cf.frequent_above) == (182, 3)

    def test_they_are_read_from_the_environment(self, monkeypatch):
        monkeypatch.setenv("WAYMARK_CONTACT_FIGURES_WINDOW_DAYS", "91")
        monkeypatch.setenv("WAYMARK_CONTACT_FIGURES_FREQUENT_ABOVE", "5")
        cf = contact_figures()
        assert (cf.window_days, cf.frequent_above) == (91, 5)

    @pytest.mark.parametrize(
        "name,value",
        [
            ("WINDOW_DAYS", "0"),
            ("WINDOW_DAYS", "6"),
            ("WINDOW_DAYS", "731"),
            ("WINDOW_DAYS", "six months"),
            ("FREQUENT_ABOVE", "-1"),
            ("FREQUENT_ABOVE", "101"),
        ],
    )
    def test_a_bad_value_is_refused_with_its_name(self, monkeypatch, name, value):
        monkeypatch.setenv(f"WAYMARK_CONTACT_FIGURES_{name}", value)
        with pytest.raises(ValidationError, match=name.lower()):
            contact_figures()
