"""The UK profile's /services and /service_at_locations filters, parsed: a value the profile's
documentation gives a meaning is taken; anything else is a 400, never silently ignored.

The profile (schema/openapi.json, components/parameters) says:
- minimum_age: "Return services with a minimum age of at least the specified value."
- maximum_age: "Return services with a maximum age of at equal to or below the specified value."
- start_time: "Return services with a start time of at least the specified value."
- end_time: "Return services with a end time of at equal to or below the specified value."
- day: "Return services with a day equal to the specified value."
"""

from __future__ import annotations

from datetime import time
from typing import Any

import pytest

from services.directory.oruk.filters import Filters, InvalidFilter, conditions, parse_filters
from services.directory.oruk.filters import matches as matches_service

NONE: dict[str, str | None] = dict(
    minimum_age=None, maximum_age=None, day=None, start_time=None, end_time=None
)


def parse(**given: str) -> Filters:
    return parse_filters(**{**NONE, **given})


class TestParse:
    def test_nothing_given_filters_nothing(self) -> None:
        f = parse()
        assert f == Filters() and conditions(f) == ([], {})

    @pytest.mark.parametrize(
        ("raw", "value"), [("0", 0), ("18", 18), ("18.5", 18.5), ("120", 120), (" 65 ", 65)]
    )
    def test_ages_are_numbers(self, raw: str, value: float) -> None:
        assert parse(minimum_age=raw).minimum_age == value
        assert parse(maximum_age=raw).maximum_age == value

    @pytest.mark.parametrize(
        "raw", ["", "-1", "abc", "18y", "1e2", "NaN", "inf", "151", "18,5", "0x12", "1 8"]
    )
    def test_a_bad_age_is_a_400(self, raw: str) -> None:
        for name in ("minimum_age", "maximum_age"):
            with pytest.raises(InvalidFilter) as e:
                parse(**{name: raw})
            assert e.value.status == 400 and name in e.value.message

    @pytest.mark.parametrize(
        ("raw", "value"),
        [
            ("MO", "MO"),
            ("mo", "MO"),
            ("Su", "SU"),
            ("monday", "MO"),
            ("Saturday", "SA"),
            ("TH", "TH"),
        ],
    )
    def test_a_day_is_an_icalendar_day_or_its_english_name(self, raw: str, value: str) -> None:
        assert parse(day=raw).day == value

    @pytest.mark.parametrize("raw", ["", "M", "MON", "funday", "1", "MO,TU", "2MO", "lundi"])
    def test_a_bad_day_is_a_400(self, raw: str) -> None:
        with pytest.raises(InvalidFilter) as e:
            parse(day=raw)
        assert e.value.status == 400 and "day" in e.value.message

    @pytest.mark.parametrize(
        ("raw", "value"),
        [
            ("09:00", time(9)),
            ("17:30", time(17, 30)),
            ("09:00:15", time(9, 0, 15)),
            ("00:00", time(0)),
        ],
    )
    def test_times_are_hh_mm_or_hh_mm_ss(self, raw: str, value: time) -> None:
        assert parse(start_time=raw).start_time == value
        assert parse(end_time=raw).end_time == value

    @pytest.mark.parametrize(
        "raw", ["", "9", "9:00", "24:00", "12:60", "noon", "09:00:60", "09.00", "T09:00", "09:00Z"]
    )
    def test_a_bad_time_is_a_400(self, raw: str) -> None:
        for name in ("start_time", "end_time"):
            with pytest.raises(InvalidFilter) as e:
                parse(**{name: raw})
            assert e.value.status == 400 and name in e.value.message

    def test_a_minimum_above_the_maximum_is_a_400(self) -> None:
        with pytest.raises(InvalidFilter):
            parse(minimum_age="40", maximum_age="30")
        assert parse(minimum_age="30", maximum_age="30").maximum_age == 30

    def test_a_start_after_the_end_is_a_400(self) -> None:
        with pytest.raises(InvalidFilter):
            parse(start_time="18:00", end_time="09:00")
        assert parse(start_time="09:00", end_time="09:00").end_time == time(9)


def service(
    minimum_age: int | None = None, maximum_age: int | None = None, *schedules: Any
) -> dict[str, Any]:
    return {"minimum_age": minimum_age, "maximum_age": maximum_age, "schedules": list(schedules)}


def sched(byday: str | None, opens: str | None, closes: str | None) -> dict[str, Any]:
    return {"byday": byday, "opens_at": opens, "closes_at": closes}


WEEKDAYS_9_5 = sched("MO,TU,WE,TH,FR", "09:00", "17:00")
SATURDAY_MORNING = sched("SA", "10:00", "12:30")
EVENINGS = sched("2TU", "18:00:00", "21:00")


class TestMatches:
    """The exact meaning of each filter, as the SQL applies it (checked on the real database by
    test_profile.py); this pure twin states it case by case."""

    @pytest.mark.parametrize(
        ("given", "svc", "expected"),
        [
            # minimum_age: the service's minimum age is at least the value
            ({"minimum_age": "18"}, service(18, 65), True),
            ({"minimum_age": "18"}, service(25, 65), True),
            ({"minimum_age": "18"}, service(16, 65), False),
            ({"minimum_age": "18"}, service(None, 65), False),
            # maximum_age: the service's maximum age is at most the value
            ({"maximum_age": "65"}, service(18, 65), True),
            ({"maximum_age": "65"}, service(18, 25), True),
            ({"maximum_age": "65"}, service(18, 99), False),
            ({"maximum_age": "65"}, service(18, None), False),
            ({"minimum_age": "16", "maximum_age": "25"}, service(16, 25), True),
            ({"minimum_age": "16", "maximum_age": "25"}, service(16, 30), False),
            # day: a schedule's byday holds the day (an ordinal such as 2TU counts)
            ({"day": "MO"}, service(None, None, WEEKDAYS_9_5), True),
            ({"day": "SA"}, service(None, None, WEEKDAYS_9_5, SATURDAY_MORNING), True),
            ({"day": "SU"}, service(None, None, WEEKDAYS_9_5, SATURDAY_MORNING), False),
            ({"day": "TU"}, service(None, None, EVENINGS), True),
            ({"day": "MO"}, service(None, None), False),
            ({"day": "MO"}, service(None, None, sched(None, "09:00", "17:00")), False),
            # start_time: a schedule opens at or after the value
            ({"start_time": "09:00"}, service(None, None, WEEKDAYS_9_5), True),
            ({"start_time": "09:30"}, service(None, None, WEEKDAYS_9_5), False),
            ({"start_time": "09:30"}, service(None, None, WEEKDAYS_9_5, SATURDAY_MORNING), True),
            ({"start_time": "18:00"}, service(None, None, EVENINGS), True),
            ({"start_time": "09:00"}, service(None, None, sched("MO", None, "17:00")), False),
            # end_time: a schedule closes at or before the value
            ({"end_time": "17:00"}, service(None, None, WEEKDAYS_9_5), True),
            ({"end_time": "16:59"}, service(None, None, WEEKDAYS_9_5), False),
            ({"end_time": "13:00"}, service(None, None, WEEKDAYS_9_5, SATURDAY_MORNING), True),
            # together: one schedule meets them all
            (
                {"day": "SA", "start_time": "09:00", "end_time": "13:00"},
                service(None, None, WEEKDAYS_9_5, SATURDAY_MORNING),
                True,
            ),
            (
                {"day": "MO", "end_time": "13:00"},
                service(None, None, WEEKDAYS_9_5, SATURDAY_MORNING),
                False,
            ),
            (
                {"day": "TU", "start_time": "17:00", "end_time": "21:00"},
                service(None, None, WEEKDAYS_9_5, EVENINGS),
                True,
            ),
            ({"day": "WE", "minimum_age": "18"}, service(18, None, WEEKDAYS_9_5), True),
            ({"day": "SU", "minimum_age": "18"}, service(18, None, WEEKDAYS_9_5), False),
        ],
    )
    def test_a_service_matches_exactly_when_the_profile_says(
        self, given: dict[str, str], svc: dict[str, Any], expected: bool
    ) -> None:
        assert matches_service(parse(**given), svc) is expected

    def test_every_filter_given_adds_a_condition(self) -> None:
        where, params = conditions(
            parse(minimum_age="18", maximum_age="65", day="MO", start_time="09:00")
        )
        assert len(where) == 3  # two ages, and one schedule meeting day and start time
        assert params == {
            "oruk_min_age": 18,
            "oruk_max_age": 65,
            "oruk_day": "MO",
            "oruk_start": time(9),
        }
