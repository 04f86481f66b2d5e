"""The integration service's pure rules: what a contact report must hold, and when a report
changes what is known."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.integration.domain import (
    SAME_CONTACT_MINUTES,
    ContactReport,
    UnmappableReport,
    checked,
    merged,
    same_contact,
    same_provider,
)
from shared.vocabulary import ContactKind, ContactStatus

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
VALID_NHS = "9434765919"


def report(**kw: object) -> ContactReport:
    base = ContactReport(
        source_ref="V123",
        nhs_number=VALID_NHS,
        contact_kind=ContactKind.AE_ATTENDANCE,
        status=ContactStatus.ARRIVED,
        started_at=NOW - timedelta(hours=3),
        source_org="RX1",
        chief_complaint="279039007",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


class TestChecked:
    def test_a_valid_report_gives_the_nhs_number_and_the_facts(self) -> None:
        nhs, facts = checked(report(nhs_number="943 476 5919"), now=NOW)
        assert nhs == VALID_NHS
        assert facts.contact_kind is ContactKind.AE_ATTENDANCE
        assert facts.planned is False
        assert facts.chief_complaint == "279039007"

    @pytest.mark.parametrize(
        "kind",
        [
            ContactKind.AE_ATTENDANCE,
            ContactKind.NHS_111,
            ContactKind.OUT_OF_HOURS,
            ContactKind.CRISIS_TEAM,
        ],
    )
    def test_urgent_kinds_are_unplanned_whatever_the_source_says(self, kind: ContactKind) -> None:
        assert checked(report(contact_kind=kind, planned=True), now=NOW)[1].planned is False

    @pytest.mark.parametrize(("planned", "expected"), [(None, True), (True, True), (False, False)])
    def test_a_gp_appointment_is_planned_unless_the_source_says_otherwise(
        self, planned: bool | None, expected: bool
    ) -> None:
        facts = checked(report(contact_kind=ContactKind.GP_APPOINTMENT, planned=planned), now=NOW)[
            1
        ]
        assert facts.planned is expected

    def test_times_are_kept_in_utc(self) -> None:
        local = datetime(2026, 6, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
        facts = checked(report(started_at=local), now=NOW)[1]
        assert facts.started_at == datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
        assert facts.started_at.tzinfo == UTC

    @pytest.mark.parametrize(
        ("change", "words"),
        [
            ({"nhs_number": "9434765918"}, "check digit"),
            ({"nhs_number": ""}, "NHS number"),
            ({"nhs_number": "94347659190"}, "NHS number"),
            ({"source_ref": ""}, "identifier"),
            ({"source_ref": "x" * 201}, "identifier"),
            ({"source_org": "R X1"}, "ODS"),
            ({"source_org": ""}, "ODS"),
            ({"started_at": datetime(2026, 1, 1, 9, 0)}, "time zone"),
            ({"started_at": datetime(1999, 12, 31, tzinfo=UTC)}, "before 2000"),
            ({"started_at": NOW + timedelta(hours=1)}, "future"),
            ({"ended_at": NOW - timedelta(hours=4)}, "ends before it starts"),
            ({"chief_complaint": "0123456"}, "SNOMED"),
            ({"chief_complaint": "back pain"}, "SNOMED"),
            ({"discharge_destination": "12"}, "SNOMED"),
            ({"diagnosis_codes": ("279039007", "abc")}, "SNOMED"),
            ({"diagnosis_codes": ("279039007",) * 21}, "more than 20"),
            ({"attendance_category": "6"}, "ECDS"),
            ({"attendance_category": "01"}, "ECDS"),
        ],
    )
    def test_what_cannot_be_a_contact_is_refused_with_the_reason(
        self, change: dict[str, object], words: str
    ) -> None:
        with pytest.raises(UnmappableReport, match=words):
            checked(report(**change), now=NOW)

    def test_a_little_clock_skew_is_allowed(self) -> None:
        checked(report(started_at=NOW + timedelta(minutes=5)), now=NOW)

    def test_a_booked_appointment_may_be_in_the_future(self) -> None:
        booked = report(
            contact_kind=ContactKind.GP_APPOINTMENT,
            status=ContactStatus.BOOKED,
            started_at=NOW + timedelta(days=30),
        )
        assert checked(booked, now=NOW)[1].status is ContactStatus.BOOKED

    def test_repeated_diagnosis_codes_are_kept_once_in_order(self) -> None:
        facts = checked(report(diagnosis_codes=("81680005", "279039007", "81680005")), now=NOW)[1]
        assert facts.diagnosis_codes == ("81680005", "279039007")


class TestMerged:
    def facts(self, **kw: object):  # type: ignore[no-untyped-def]
        return checked(report(**kw), now=NOW)[1]

    def test_a_first_report_is_new(self) -> None:
        new = self.facts()
        assert merged(None, new) == new

    def test_the_same_report_again_changes_nothing(self) -> None:
        assert merged(self.facts(), self.facts()) is None

    def test_a_discharge_keeps_what_the_registration_said(self) -> None:
        known = self.facts(attendance_category="1")
        later = self.facts(
            status=ContactStatus.FINISHED,
            ended_at=NOW - timedelta(hours=1),
            chief_complaint=None,
            discharge_destination="306689006",
        )
        result = merged(known, later)
        assert result is not None
        assert result.status is ContactStatus.FINISHED
        assert result.chief_complaint == "279039007"
        assert result.attendance_category == "1"
        assert result.discharge_destination == "306689006"

    def test_what_a_later_message_says_wins(self) -> None:
        result = merged(self.facts(), self.facts(chief_complaint="81680005"))
        assert result is not None and result.chief_complaint == "81680005"

    def test_a_contact_entered_in_error_stays_so(self) -> None:
        gone = self.facts(status=ContactStatus.ENTERED_IN_ERROR)
        assert merged(gone, self.facts(status=ContactStatus.FINISHED)) is None

    def test_a_cancellation_is_a_change(self) -> None:
        result = merged(self.facts(), self.facts(status=ContactStatus.ENTERED_IN_ERROR))
        assert result is not None and result.status is ContactStatus.ENTERED_IN_ERROR


class TestSameContact:
    def facts(self, **kw: object):  # type: ignore[no-untyped-def]
        return checked(report(**kw), now=NOW)[1]

    def test_one_attendance_from_two_feeds_is_one_contact(self) -> None:
        pas = self.facts()
        extract = self.facts(started_at=NOW - timedelta(hours=3, minutes=-20), source_org="RX101")
        assert same_contact(pas, extract)

    @pytest.mark.parametrize(
        "change",
        [
            {"contact_kind": ContactKind.CRISIS_TEAM},
            {"source_org": "RY2"},
            {"source_org": "RX2"},
            {"started_at": NOW - timedelta(hours=5)},
            {"status": ContactStatus.ENTERED_IN_ERROR},
        ],
    )
    def test_another_kind_provider_time_or_a_contact_in_error_is_not(
        self, change: dict[str, object]
    ) -> None:
        assert not same_contact(self.facts(), self.facts(**change))

    def test_the_window_is_inclusive_at_its_edge(self) -> None:
        known = self.facts()
        edge = known.started_at + timedelta(minutes=SAME_CONTACT_MINUTES)
        assert same_contact(known, replace(known, started_at=edge))
        assert not same_contact(known, replace(known, started_at=edge + timedelta(seconds=1)))

    @pytest.mark.parametrize(
        ("a", "b", "same"),
        [
            ("RX1", "RX1", True),
            ("rx1", "RX1", True),
            ("RX1", "RX101", True),
            ("RX101", "RX1", True),
            ("RX101", "RX102", False),
            ("RX1", "RX2", False),
            ("RX10", "RX101", False),
            ("A81001", "A81002", False),
        ],
    )
    def test_a_site_is_its_organisation(self, a: str, b: str, same: bool) -> None:
        assert same_provider(a, b) is same
