"""The alert report's pure helpers (alerts/reports.py, the dashboard's overview): medians,
rates per 1,000 with nothing to divide by, UK calendar months across the clock changes, and the
figures put together from known referrals and alerts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.notifications.alerts.reports import (
    CohortReferral,
    CountedAlert,
    Median,
    days_between,
    median,
    month_key,
    per_thousand,
    summarise,
    uk_month,
    window,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class TestMedian:
    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            ([], None),
            ([4.0], 4.0),
            ([1.0, 2.0, 3.0], 2.0),
            ([3.0, 1.0, 2.0], 2.0),
            ([1.0, 2.0, 3.0, 4.0], 2.5),
            ([10.0, 1.0], 5.5),
            ([2.0, 2.0, 2.0, 9.0], 2.0),
            ([0.5, 0.25, 100.0], 0.5),
            ([0.0, 0.0], 0.0),
            ([1.0, 1.0, 50.0, 50.0, 50.0], 50.0),
        ],
    )
    def test_the_middle_value_or_the_mean_of_the_middle_two(self, values, expected):
        assert median(values) == expected

    def test_any_iterable_will_do(self):
        assert median(x / 2 for x in range(5)) == 1.0

    def test_one_long_wait_does_not_drag_the_median(self):
        assert median([1.0, 2.0, 3.0, 400.0]) == 2.5


class TestPerThousand:
    @pytest.mark.parametrize(
        ("count", "referrals", "expected"),
        [
            (0, 10, 0.0),
            (1, 1, 1000.0),
            (3, 4, 750.0),
            (1, 1000, 1.0),
            (7, 2000, 3.5),
            (12, 5, 2400.0),  # more alerts than referrals: a referral can loop and stall
        ],
    )
    def test_alerts_per_thousand_referrals(self, count, referrals, expected):
        assert per_thousand(count, referrals) == expected

    def test_a_third_is_not_rounded_here(self):
        assert per_thousand(1, 3) == pytest.approx(333.3333333)

    @pytest.mark.parametrize("count", [0, 1, 5])
    def test_no_referrals_is_unknown_not_zero(self, count):
        assert per_thousand(count, 0) is None

    @pytest.mark.parametrize(("count", "referrals"), [(-1, 10), (1, -10)])
    def test_negative_counts_are_refused(self, count, referrals):
        with pytest.raises(ValueError):
            per_thousand(count, referrals)


class TestUkMonth:
    @pytest.mark.parametrize(
        ("at", "expected"),
        [
            (utc(2026, 1, 15, 12), date(2026, 1, 1)),
            # winter: UK time is UTC
            (utc(2026, 1, 31, 23, 59), date(2026, 1, 1)),
            (utc(2025, 12, 31, 23, 59, 59), date(2025, 12, 1)),
            (utc(2026, 1, 1, 0, 0), date(2026, 1, 1)),
            # summer time (BST, UTC+1): late evening UTC on the last day is the next month
            (utc(2026, 5, 31, 23, 30), date(2026, 6, 1)),
            (utc(2026, 5, 31, 22, 59), date(2026, 5, 1)),
            (utc(2026, 9, 30, 23, 0), date(2026, 10, 1)),
            # the clocks go forward at 01:00 UTC on the last Sunday of March (29 March 2026)
            (utc(2026, 3, 31, 23, 30), date(2026, 4, 1)),
            (utc(2026, 3, 29, 0, 59), date(2026, 3, 1)),
            # and back at 01:00 UTC on the last Sunday of October (25 October 2026)
            (utc(2026, 10, 31, 23, 30), date(2026, 10, 1)),
            (utc(2026, 10, 31, 23, 59), date(2026, 10, 1)),
        ],
    )
    def test_the_calendar_month_in_uk_time(self, at, expected):
        assert uk_month(at) == expected

    def test_other_offsets_are_converted_first(self):
        tokyo = timezone(timedelta(hours=9))
        assert uk_month(datetime(2026, 7, 1, 5, 0, tzinfo=tokyo)) == date(2026, 6, 1)
        new_york = timezone(timedelta(hours=-5))
        assert uk_month(datetime(2026, 1, 31, 20, 0, tzinfo=new_york)) == date(2026, 2, 1)

    def test_a_time_without_a_zone_is_refused(self):
        with pytest.raises(ValueError):
            uk_month(datetime(2026, 1, 1, 12))

    @pytest.mark.parametrize(
        ("month", "key"),
        [
            (date(2026, 1, 1), "2026-01"),
            (date(2025, 12, 1), "2025-12"),
            (date(999, 3, 1), "0999-03"),
        ],
    )
    def test_month_keys_sort_as_text(self, month, key):
        assert month_key(month) == key


class TestWindow:
    def test_twelve_months_end_with_the_current_one(self):
        start, months = window(utc(2026, 6, 15, 12), 12)
        assert months[0] == date(2025, 7, 1) and months[-1] == date(2026, 6, 1)
        assert len(months) == 12 and len(set(months)) == 12
        assert list(months) == sorted(months)
        # midnight UK time on 1 July 2025 was 23:00 UTC on 30 June (summer time)
        assert start == utc(2025, 6, 30, 23, 0)

    def test_a_winter_start_is_midnight_utc(self):
        start, months = window(utc(2026, 3, 2, 9), 3)
        assert months == (date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1))
        assert start == utc(2026, 1, 1, 0, 0)

    def test_the_window_crosses_the_year(self):
        _, months = window(utc(2026, 2, 10), 4)
        assert months == (date(2025, 11, 1), date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1))

    def test_one_month_is_the_month_so_far(self):
        start, months = window(utc(2026, 8, 20, 10), 1)
        assert months == (date(2026, 8, 1),)
        assert start == utc(2026, 7, 31, 23, 0)

    def test_the_current_month_is_the_uk_month_of_now(self):
        # 23:30 UTC on 31 May is 00:30 on 1 June in London: June is the current month
        _, months = window(utc(2026, 5, 31, 23, 30), 2)
        assert months == (date(2026, 5, 1), date(2026, 6, 1))

    def test_twenty_four_months(self):
        _, months = window(utc(2026, 12, 31, 12), 24)
        assert months[0] == date(2025, 1, 1) and months[-1] == date(2026, 12, 1)

    @pytest.mark.parametrize("months", [0, -1])
    def test_at_least_one_month(self, months):
        with pytest.raises(ValueError):
            window(utc(2026, 1, 1), months)


class TestDaysBetween:
    @pytest.mark.parametrize(
        ("start", "end", "days"),
        [
            (utc(2026, 1, 1), utc(2026, 1, 2), 1.0),
            (utc(2026, 1, 1), utc(2026, 1, 1, 12), 0.5),
            (utc(2026, 1, 1), utc(2026, 1, 1), 0.0),
            # elapsed time, not calendar days: the night the clocks go forward is still 24 hours
            (utc(2026, 3, 28, 12), utc(2026, 3, 29, 12), 1.0),
            (utc(2026, 1, 1), utc(2026, 4, 1), 90.0),
        ],
    )
    def test_elapsed_days(self, start, end, days):
        assert days_between(start, end) == days


# --- the figures put together ---------------------------------------------------------------

NOW = utc(2026, 7, 15, 12)
START, MONTHS = window(NOW, 3)  # May, June and July 2026


def ref(
    rid: str,
    at: datetime,
    category: str,
    triaged: datetime | None = None,
    treated: datetime | None = None,
) -> CohortReferral:
    return CohortReferral(rid, at, category, triaged, treated)


def alert(aid: str, kind: str, at: datetime | None, category: str | None) -> CountedAlert:
    return CountedAlert(aid, kind, at, category)


COHORT = [
    ref("r1", utc(2026, 5, 10, 9), "pain", utc(2026, 5, 12, 9), utc(2026, 5, 20, 9)),
    ref("r2", utc(2026, 5, 31, 23, 30), "physio", utc(2026, 6, 4, 23, 30)),  # June in the UK
    ref("r3", utc(2026, 6, 10, 10), "physio", utc(2026, 6, 11, 10), utc(2026, 7, 1, 10)),
    ref("r4", utc(2026, 7, 1, 8), "talking"),
]


class TestSummarise:
    def overview(self, cohort=COHORT, alerts=()):  # type: ignore[no-untyped-def]
        return summarise(
            ics="ICS-1", start=START, end=NOW, months=MONTHS, cohort=cohort, alerts=list(alerts)
        )

    def test_rates_overall_by_category_and_by_month(self):
        o = self.overview(
            alerts=[
                alert("a1", "stalled", utc(2026, 7, 1, 8), "talking"),
                alert("a2", "looping", utc(2026, 5, 31, 23, 30), "physio"),
                alert("a3", "looping", utc(2026, 5, 10, 9), "pain"),
                alert("a4", "stalled", utc(2026, 6, 10, 10), "physio"),
            ]
        )
        assert (o.referrals, o.overall.loops, o.overall.stalls) == (4, 2, 2)
        assert o.overall.loops_per_1000 == 500.0 and o.overall.stalls_per_1000 == 500.0
        cats = {
            r.key: (r.referrals, r.loops, r.stalls, r.loops_per_1000, r.stalls_per_1000)
            for r in o.by_category
        }
        assert cats == {
            "pain": (1, 1, 0, 1000.0, 0.0),
            "physio": (2, 1, 1, 500.0, 500.0),
            "talking": (1, 0, 1, 0.0, 1000.0),
        }
        assert [r.key for r in o.by_category] == ["pain", "physio", "talking"]
        months = [(r.key, r.month, r.referrals, r.loops, r.stalls) for r in o.by_month]
        assert months == [
            ("2026-05", date(2026, 5, 1), 1, 1, 0),
            ("2026-06", date(2026, 6, 1), 2, 1, 1),
            ("2026-07", date(2026, 7, 1), 1, 0, 1),
        ]
        assert o.unattributed_alerts == 0

    def test_medians_and_the_referrals_they_are_based_on(self):
        o = self.overview()
        assert o.to_triage == Median(2.0, 3)  # 2, 4 and 1 days
        assert o.to_treatment == Median(15.5, 2)  # 10 and 21 days

    def test_an_empty_month_is_listed_with_no_rate(self):
        o = self.overview(cohort=[c for c in COHORT if c.referral_id != "r1"])
        may = o.by_month[0]
        assert (may.key, may.referrals, may.loops, may.stalls) == ("2026-05", 0, 0, 0)
        assert may.loops_per_1000 is None and may.stalls_per_1000 is None

    def test_nothing_at_all(self):
        o = self.overview(cohort=[])
        assert o.referrals == 0 and o.by_category == ()
        assert o.overall.loops_per_1000 is None
        assert [r.referrals for r in o.by_month] == [0, 0, 0]
        assert o.to_triage == Median(None, 0) and o.to_treatment == Median(None, 0)

    def test_alerts_from_referrals_outside_the_window_count_nowhere(self):
        o = self.overview(
            alerts=[
                alert("old", "looping", utc(2026, 4, 30, 22), "pain"),
                alert("future", "stalled", utc(2026, 7, 16), "pain"),
            ]
        )
        assert (o.overall.loops, o.overall.stalls, o.unattributed_alerts) == (0, 0, 0)
        assert all(r.loops == r.stalls == 0 for r in o.by_category + o.by_month)

    def test_alerts_with_no_referral_on_record_are_unattributed(self):
        o = self.overview(
            alerts=[alert("x", "stalled", None, None), alert("y", "looping", None, None)]
        )
        assert o.unattributed_alerts == 2
        assert (o.overall.loops, o.overall.stalls) == (0, 0)

    def test_the_window_is_carried_for_the_page_to_name(self):
        o = self.overview()
        assert o.start == START == utc(2026, 4, 30, 23) and o.end == NOW
        assert o.months == (date(2026, 5, 1), date(2026, 6, 1), date(2026, 7, 1))
        assert o.ics == "ICS-1"
