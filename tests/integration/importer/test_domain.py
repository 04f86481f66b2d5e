"""The bulk extracts' rules, row by row: what each kind of record becomes, and every way a row is
refused with a reason that names the column and never repeats an NHS number."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from services.integration.importer.domain import (
    Kind,
    Record,
    RowRefused,
    contact,
    masked,
    record_key,
    referral_history,
    snomed,
)
from shared.vocabulary import ContactKind, ContactStatus
from tests.helpers import synthetic_nhs_number

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NHS = synthetic_nhs_number(random.Random(17))


def ecds(**kw: object) -> Record:
    fields = {
        "attendance_id": "RX1-ED-000123",
        "nhs_number": NHS,
        "arrival_date": "2026-06-14",
        "arrival_time": "23:10",
        "departure_date": "2026-06-15",
        "departure_time": "02:45",
        "attendance_category": "1",
        "chief_complaint": "161891005",
        "diagnoses": "279039007",
        "discharge_destination": "306689006",
        "provider_ods": "RX1",
        "contact_kind": "",
    }
    fields.update(kw)
    return Record(2, fields)


def gpad(**kw: object) -> Record:
    fields = {
        "appointment_id": "A81001-2026-77",
        "nhs_number": NHS,
        "appointment_date": "2026-03-02",
        "appointment_time": "09:20",
        "appt_status": "Attended",
        "appt_mode": "Face-to-Face",
        "time_between_book_and_appt": "8 to 14 Days",
        "urgent": "N",
        "practice_ods": "A81001",
    }
    fields.update(kw)
    return Record(3, fields)


def ers(steps: list[dict[str, str]] | None = None, **kw: object) -> Record:
    fields = {
        "ubrn": "000012345678",
        "nhs_number": NHS,
        "referring_org": "A81001",
        "registered_practice": "A81001",
        "receiving_org": "RTH",
        "service_id": "svc-pain-mgmt-programme",
        "specialty": "Pain Management",
        "priority": "Routine",
        "reason_codes": "279039007;35489007",
    }
    fields.update(kw)
    if steps is None:
        steps = [
            {"step": "sent", "step_at": "2026-05-01T09:00:00+01:00"},
            {"step": "accepted", "step_at": "2026-05-04T10:00:00+01:00"},
            {
                "step": "booked",
                "step_at": "2026-05-06T10:00:00+01:00",
                "appointment_at": "2026-05-20T14:00:00+01:00",
            },
            {"step": "attended", "step_at": "2026-05-20T15:00:00+01:00"},
            {"step": "discharged", "step_at": "2026-06-01", "reason": "treatment-completed"},
        ]
    return Record(5, fields, tuple(steps))


class TestAnAndEAttendance:
    def test_a_full_row_becomes_a_finished_unplanned_attendance_in_utc(self) -> None:
        report = contact(Kind.ECDS, ecds(), now=NOW, default_org=None)
        assert report.contact_kind is ContactKind.AE_ATTENDANCE
        assert report.status is ContactStatus.FINISHED
        # 23:10 British Summer Time is 22:10 UTC
        assert report.started_at.astimezone(UTC) == datetime(2026, 6, 14, 22, 10, tzinfo=UTC)
        assert report.ended_at.astimezone(UTC) == datetime(2026, 6, 15, 1, 45, tzinfo=UTC)
        assert (report.chief_complaint, report.diagnosis_codes) == ("161891005", ("279039007",))
        assert (report.discharge_destination, report.attendance_category) == ("306689006", "1")
        assert report.source_org == "RX1"

    def test_winter_times_are_greenwich_mean_time(self) -> None:
        report = contact(
            Kind.ECDS,
            ecds(arrival_date="2026-01-10", departure_date="", departure_time=""),
            now=NOW,
            default_org=None,
        )
        assert report.started_at.astimezone(UTC) == datetime(2026, 1, 10, 23, 10, tzinfo=UTC)
        assert report.status is ContactStatus.ARRIVED and report.ended_at is None

    @pytest.mark.parametrize(
        ("word", "kind"),
        [
            ("nhs_111", ContactKind.NHS_111),
            ("out_of_hours", ContactKind.OUT_OF_HOURS),
            ("crisis_team", ContactKind.CRISIS_TEAM),
            ("AE_ATTENDANCE", ContactKind.AE_ATTENDANCE),
        ],
    )
    def test_the_contact_kind_column_flags_111_out_of_hours_and_crisis(self, word, kind) -> None:
        assert (
            contact(Kind.ECDS, ecds(contact_kind=word), now=NOW, default_org=None).contact_kind
            is kind
        )

    def test_several_diagnoses_separated_by_semicolons_bars_or_a_json_list(self) -> None:
        for value in ("279039007;35489007", "279039007|35489007", ["279039007", "35489007"]):
            report = contact(Kind.ECDS, ecds(diagnoses=value), now=NOW, default_org=None)
            assert report.diagnosis_codes == ("279039007", "35489007")

    def test_an_empty_provider_column_takes_the_sources_organisation(self) -> None:
        report = contact(Kind.ECDS, ecds(provider_ods=""), now=NOW, default_org="RXQ")
        assert report.source_org == "RXQ"

    @pytest.mark.parametrize(
        ("change", "says"),
        [
            ({"nhs_number": "9434765918"}, "nhs_number is not a valid NHS number"),
            ({"nhs_number": ""}, "nhs_number is missing"),
            ({"nhs_number": "943476591"}, "nhs_number is not a valid NHS number"),
            ({"nhs_number": "94347659190"}, "nhs_number is not a valid NHS number"),
            ({"arrival_date": "2026-02-30"}, "arrival_date '2026-02-30' is not a date"),
            ({"arrival_date": "14/13/2026"}, "arrival_date '14/13/2026' is not a date"),
            ({"arrival_date": "yesterday"}, "is not a date"),
            ({"arrival_date": ""}, "arrival_time is given without arrival_date"),
            ({"arrival_date": "", "arrival_time": ""}, "arrival_date is missing"),
            ({"arrival_time": "25:00"}, "arrival_time '25:00' is not a time"),
            ({"arrival_time": "10:00+01:00"}, "carries an offset"),
            ({"departure_date": "2026-06-13"}, "ends before it starts"),
            (
                {"arrival_date": "2027-06-14", "departure_date": "", "departure_time": ""},
                "in the future",
            ),
            ({"arrival_date": "1999-12-30"}, "before 2000"),
            ({"attendance_category": "6"}, "not an ECDS category"),
            ({"chief_complaint": "161891006"}, "fails the SNOMED CT check digit"),
            ({"chief_complaint": "back pain"}, "is not a SNOMED CT concept id"),
            ({"chief_complaint": "0161891005"}, "is not a SNOMED CT concept id"),
            ({"diagnoses": "279039007;12345"}, "is not a SNOMED CT concept id"),
            ({"discharge_destination": "306689016"}, "fails the SNOMED CT check digit"),
            ({"contact_kind": "ambulance"}, "contact_kind 'ambulance' is not one of"),
            ({"provider_ods": "RX 1"}, "is not an ODS code"),
            ({"provider_ods": ""}, "provider_ods is missing"),
            ({"attendance_id": ""}, "attendance_id is missing"),
            ({"attendance_id": "visit 12"}, "is not an identifier"),
        ],
    )
    def test_a_bad_row_is_refused_saying_which_column(self, change, says) -> None:
        with pytest.raises(RowRefused, match=says) as caught:
            contact(Kind.ECDS, ecds(**change), now=NOW, default_org=None)
        assert NHS not in str(caught.value)

    def test_an_nhs_number_in_the_wrong_column_is_masked_in_the_reason(self) -> None:
        with pytest.raises(RowRefused) as caught:
            contact(Kind.ECDS, ecds(chief_complaint=NHS), now=NOW, default_org=None)
        assert NHS not in str(caught.value) and "[NHS number]" in str(caught.value)

    def test_the_report_key_is_the_attendance_id_and_never_an_nhs_number(self) -> None:
        assert record_key(Kind.ECDS, ecds()) == "RX1-ED-000123"
        assert record_key(Kind.ECDS, ecds(attendance_id=NHS)) == "[NHS number]"


class TestGpAppointment:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("Attended", ContactStatus.FINISHED),
            ("DNA", ContactStatus.DID_NOT_ATTEND),
            ("dna", ContactStatus.DID_NOT_ATTEND),
            ("Cancelled", ContactStatus.CANCELLED),
        ],
    )
    def test_gpad_statuses(self, status, expected) -> None:
        assert (
            contact(Kind.GPAD, gpad(appt_status=status), now=NOW, default_org=None).status
            is expected
        )

    def test_a_booked_appointment_may_be_in_the_future(self) -> None:
        report = contact(
            Kind.GPAD,
            gpad(appt_status="Booked", appointment_date="2027-01-05"),
            now=NOW,
            default_org=None,
        )
        assert report.status is ContactStatus.BOOKED

    @pytest.mark.parametrize(
        ("lead", "urgent", "planned"),
        [
            ("8 to 14 Days", "N", True),
            ("Same Day", "N", False),
            ("same day", "", False),
            ("2 to 7 Days", "Y", False),
            ("", "", True),
            ("More than 28 Days", "no", True),
        ],
    )
    def test_same_day_or_urgent_is_unplanned(self, lead, urgent, planned) -> None:
        report = contact(
            Kind.GPAD,
            gpad(time_between_book_and_appt=lead, urgent=urgent),
            now=NOW,
            default_org=None,
        )
        assert report.contact_kind is ContactKind.GP_APPOINTMENT and report.planned is planned

    @pytest.mark.parametrize(
        ("change", "says"),
        [
            ({"appt_status": "Unknown"}, "appt_status 'unknown' is not Attended"),
            ({"appt_status": ""}, "appt_status is missing"),
            ({"appt_mode": "Carrier pigeon"}, "is not a GPAD appointment mode"),
            ({"time_between_book_and_appt": "next week"}, "is not a GPAD interval"),
            ({"urgent": "maybe"}, "urgent 'maybe' is not Y or N"),
            ({"appointment_date": "02-03-2026"}, "is not a date"),
            ({"appointment_date": "2027-01-05"}, "in the future"),  # attended, in the future
            ({"nhs_number": "1234567890"}, "not a valid NHS number"),
            ({"practice_ods": "A81001!"}, "not an ODS code"),
        ],
    )
    def test_a_bad_row_is_refused(self, change, says) -> None:
        with pytest.raises(RowRefused, match=says):
            contact(Kind.GPAD, gpad(**change), now=NOW, default_org=None)


class TestReferralHistory:
    def test_a_worklist_referral_becomes_the_history_import_body(self) -> None:
        body = referral_history(ers(), source_system="ers-worklist", now=NOW)
        assert body["source_system"] == "ers-worklist" and body["source_ref"] == "000012345678"
        assert body["nhs_number"] == NHS
        assert (body["from_org"], body["to_org"]) == ("A81001", "RTH")
        assert body["to_service_id"] == "svc-pain-mgmt-programme"
        assert body["service_category"] == "pain_management_programme"
        assert body["priority"] == "routine" and body["registered_practice"] == "A81001"
        assert body["reason_codes"] == ["279039007", "35489007"]
        assert [s["state"] for s in body["history"]] == [
            "submitted",
            "accepted",
            "booked",
            "attended",
            "discharged",
        ]
        assert body["history"][0]["at"] == "2026-05-01T08:00:00+00:00"
        assert body["history"][2]["appointment_at"] == "2026-05-20T13:00:00+00:00"
        assert body["history"][4] == {
            "state": "discharged",
            "at": "2026-05-31T23:00:00+00:00",  # a date alone: midnight in London
            "reason": "treatment-completed",
        }
        assert "reason" not in body["history"][0]

    def test_an_ers_service_id_maps_through_the_service_map_or_to_none(self) -> None:
        assert (
            referral_history(ers(service_id="1234567"), source_system="s", now=NOW)["to_service_id"]
            is None
        )
        mapped = referral_history(
            ers(service_id="1234567"), source_system="s", now=NOW, service_map={"1234567": "svc-x"}
        )
        assert mapped["to_service_id"] == "svc-x"

    @pytest.mark.parametrize(
        ("specialty", "priority", "category", "waymark"),
        [
            ("Physiotherapy", "Urgent", "msk_physiotherapy", "urgent"),
            ("Mental Health - Adult", "2WW", "talking_therapies_ltc", "urgent"),
            ("social_prescribing", "routine", "social_prescribing", "routine"),
        ],
    )
    def test_specialties_and_priorities(self, specialty, priority, category, waymark) -> None:
        body = referral_history(
            ers(specialty=specialty, priority=priority), source_system="s", now=NOW
        )
        assert (body["service_category"], body["priority"]) == (category, waymark)

    @pytest.mark.parametrize(
        ("change", "steps", "says"),
        [
            ({"specialty": "Cardiology"}, None, "maps to no Waymark category"),
            ({"priority": "soon"}, None, "priority 'soon' is not"),
            ({"ubrn": "UBRN 1"}, None, "is not a referral id"),
            ({"nhs_number": "9434765910"}, None, "not a valid NHS number"),
            ({"receiving_org": ""}, None, "receiving_org is missing"),
            ({"reason_codes": "279039008"}, None, "fails the SNOMED CT check digit"),
            ({}, [], "has no steps"),
            ({}, [{"step": "accepted", "step_at": "2026-05-01"}], "first step must be sent"),
            ({}, [{"step": "sent", "step_at": "2027-05-01"}], "dated in the future"),
            ({}, [{"step": "sent", "step_at": "01/13/2026"}], "is not a date"),
            ({}, [{"step": "sent", "step_at": "soon"}], "is not a date-time"),
            (
                {},
                [
                    {"step": "sent", "step_at": "2026-05-02"},
                    {"step": "accepted", "step_at": "2026-05-01"},
                ],
                "dated before the step it follows",
            ),
            (
                {},
                [
                    {"step": "sent", "step_at": "2026-05-02"},
                    {"step": "triaged", "step_at": "2026-05-03"},
                ],
                "'triaged' is not one of",
            ),
            (
                {},
                [
                    {"step": "sent", "step_at": "2026-05-02"},
                    {"step": "sent", "step_at": "2026-05-03"},
                ],
                "a referral is sent once",
            ),
            (
                {},
                [
                    {"step": "sent", "step_at": "2026-05-02"},
                    {"step": "booked", "step_at": "2026-05-03"},
                ],
                "a booking needs its appointment_at",
            ),
            (
                {},
                [
                    {"step": "sent", "step_at": "2026-05-02", "appointment_at": "2026-05-09"},
                ],
                "only a booking has an appointment_at",
            ),
            (
                {},
                [
                    {"step": "sent", "step_at": "2026-05-02"},
                    {"step": "rejected", "step_at": "2026-05-03", "reason": "Not Suitable"},
                ],
                "is not a reason code",
            ),
        ],
    )
    def test_a_bad_referral_is_refused(self, change, steps, says) -> None:
        with pytest.raises(RowRefused, match=says):
            referral_history(ers(steps, **change), source_system="s", now=NOW)


class TestCodes:
    @pytest.mark.parametrize(
        "code", ["279039007", "35489007", "161891005", "306689006", "1066331000000109"]
    )
    def test_real_concept_ids_pass(self, code) -> None:
        assert snomed(code, "c") == code

    @pytest.mark.parametrize("code", ["279039008", "12345", "1066331000000119", "279039017"])
    def test_broken_ids_are_refused(self, code) -> None:
        with pytest.raises(RowRefused):
            snomed(code, "c")

    def test_masking_hides_valid_nhs_numbers_only(self) -> None:
        assert masked(f"x {NHS} y") == "x [NHS number] y"
        spaced = f"{NHS[:3]} {NHS[3:6]} {NHS[6:]}"
        assert masked(spaced) == "[NHS number]"
        assert masked("1234567890") == "1234567890"  # fails the check digit: not one
        assert masked("279039007") == "279039007"
