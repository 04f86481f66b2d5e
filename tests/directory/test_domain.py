"""The directory's pure rules: postcodes, lifecycle, opening hours, what makes a service
publishable, and the shipped postcode table."""

from __future__ import annotations

from datetime import time

import pytest

from services.directory import domain
from services.directory.data import generate_postcodes
from services.directory.domain import (
    Category,
    Condition,
    DeliveryMode,
    Lifecycle,
    Opening,
    WaymarkFacts,
    Weekday,
)
from shared.errors import Conflict, ValidationFailed


class TestPostcodes:
    @pytest.mark.parametrize(
        "raw, normalised",
        [
            ("wy1 0bg", "WY1 0BG"),
            ("WY10BG", "WY1 0BG"),
            ("  Wy1   0Bg ", "WY1 0BG"),
            ("M1 1AE", "M1 1AE"),
            ("B33 8TH", "B33 8TH"),
            ("CR2 6XH", "CR2 6XH"),
            ("DN55 1PT", "DN55 1PT"),
            ("W1A 1HQ", "W1A 1HQ"),
            ("EC1A 1BB", "EC1A 1BB"),
        ],
    )
    def test_uk_shapes_are_normalised(self, raw: str, normalised: str) -> None:
        assert domain.normalise_postcode(raw) == normalised

    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "12345",
            "WY1",
            "WY1 0B",
            "QA1 1AA",
            "AI1 1AA",
            "WY1 0CA",
            "WY1 0BGG",
            "ＷＹ1 0BG",
            "WY1\x000BG",
        ],
    )
    def test_other_strings_are_refused(self, raw: str) -> None:
        with pytest.raises(ValidationFailed, match="not a UK postcode"):
            domain.normalise_postcode(raw)


class TestLifecycle:
    def test_transitions(self) -> None:
        assert domain.next_lifecycle(Lifecycle.DRAFT, "publish") is Lifecycle.PUBLISHED
        assert domain.next_lifecycle(Lifecycle.PUBLISHED, "withdraw") is Lifecycle.WITHDRAWN
        assert domain.next_lifecycle(Lifecycle.WITHDRAWN, "publish") is Lifecycle.PUBLISHED
        for state, action in [
            (Lifecycle.DRAFT, "withdraw"),
            (Lifecycle.PUBLISHED, "publish"),
            (Lifecycle.WITHDRAWN, "withdraw"),
        ]:
            with pytest.raises(Conflict):
                domain.next_lifecycle(state, action)


class TestOpeningHours:
    def test_days_and_times_become_minute_of_week_ranges(self) -> None:
        ranges = domain.opening_ranges(
            [
                Opening((Weekday.MO, Weekday.TU), time(9), time(17)),
                Opening((Weekday.TU,), time(16), time(20)),  # overlaps: merged
                Opening((Weekday.SU,), time(22), time(2)),  # past midnight into Monday
                Opening((Weekday.WE,), None, None, weekly=False),
            ]
        )  # monthly: not counted
        day = domain.MINUTES_PER_DAY
        assert ranges == [(0, 120), (540, 1020), (day + 540, day + 1200), (6 * day + 1320, 7 * day)]

    def test_clock_parsing(self) -> None:
        assert domain.parse_clock("09:30") == time(9, 30)
        assert domain.parse_clock("09:30:15Z") == time(9, 30)
        assert domain.parse_clock("18:00+01:00") == time(18)
        assert domain.parse_clock("25:00") is None and domain.parse_clock("9am") is None
        assert domain.parse_byday("MO, we,2FR,XX") == [Weekday.MO, Weekday.WE]


class TestPublishable:
    def test_reasons_are_collected(self) -> None:
        facts = WaymarkFacts(
            Category.PEER_SUPPORT, (Condition.MENTAL_HEALTH,), (DeliveryMode.IN_PERSON,)
        )
        with pytest.raises(ValidationFailed) as exc:
            domain.check_publishable(domain.PublishCheck(facts, "", 0, 1))
        assert exc.value.extra["problems"] == [
            "say how to refer (how_to_refer / ORUK application_process)",
            "an in-person service needs a physical location with coordinates or a known postcode",
            "every physical location needs coordinates or a known postcode",
        ]
        domain.check_publishable(domain.PublishCheck(facts, "Ask your GP.", 1, 0))

    def test_free_and_of_charge_rules(self) -> None:
        assert domain.free_of_charge([]) and domain.free_of_charge([0, None])
        assert not domain.free_of_charge([0, 4.5])


class TestPostcodeTable:
    def test_the_shipped_csv_is_what_the_generator_makes(self) -> None:
        shipped = generate_postcodes.read()
        assert [(pc, lat, lon, place) for pc, lat, lon, place in shipped] == [
            (pc, round(lat, 6), round(lon, 6), place)
            for pc, lat, lon, place in generate_postcodes.rows()
        ]
        assert len(shipped) == len({row[0] for row in shipped}) >= 200
        for pc, lat, lon, _ in shipped:
            assert domain.normalise_postcode(pc) == pc
            assert 53.4 < lat < 54.0 and -2.4 < lon < -1.5
