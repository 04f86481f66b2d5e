"""The HL7 v2 mapping (services/integration/hl7/domain.py): each event, identity, codes, and
what is never read. Pure: no database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.integration.domain import ContactReport, UnmappableReport, checked, merged
from services.integration.hl7 import domain
from shared.vocabulary import ContactKind, ContactStatus
from tests.integration.hl7.messages import NHS, adt, ago, pid, siu

FAC = "RX1"


def one(text: str, org: str = "RX1") -> ContactReport:
    [report] = domain.reports(domain.read(text), org_code=org)
    return report


def a04(**kw: object) -> str:
    base: dict[str, object] = {"facility": FAC, "control_id": "C1", "visit": "V1"}
    return adt("A04", **{**base, **kw})  # type: ignore[arg-type]


class TestEvents:
    def test_a04_is_an_ae_attendance_that_arrived(self) -> None:
        admit = ago(hours=2).replace(microsecond=0)
        r = one(a04(admit=admit))
        assert r.contact_kind is ContactKind.AE_ATTENDANCE
        assert r.status is ContactStatus.ARRIVED
        assert r.started_at == admit and r.ended_at is None
        assert r.source_ref == "V1" and r.nhs_number == NHS
        # planned is left to the kind: A&E is always unplanned
        assert checked(r, now=datetime.now(UTC))[1].planned is False

    def test_a03_finishes_the_visit_at_the_discharge_time(self) -> None:
        out = ago(minutes=30).replace(microsecond=0)
        r = one(adt("A03", facility=FAC, control_id="C2", visit="V1", discharge=out))
        assert r.status is ContactStatus.FINISHED and r.ended_at == out

    def test_a03_without_a_discharge_time_ends_when_the_event_happened(self) -> None:
        r = one(adt("A03", facility=FAC, control_id="C2", visit="V1"))
        assert r.ended_at is not None and abs(r.ended_at - ago(minutes=2)) < timedelta(minutes=1)

    @pytest.mark.parametrize(
        ("admission_type", "planned"),
        [
            ("", True),
            ("C", True),
            ("R", True),
            ("11", True),
            ("12", True),
            ("E", False),
            ("A", False),
            ("U", False),
            ("21", False),
            ("2D", False),
            ("28", False),
        ],
    )
    def test_a01_is_an_admission_planned_unless_an_emergency(
        self, admission_type: str, planned: bool
    ) -> None:
        r = one(
            adt(
                "A01",
                facility=FAC,
                control_id="C3",
                visit="IP1",
                patient_class="I",
                admission_type=admission_type,
            )
        )
        assert r.contact_kind is ContactKind.ADMISSION and r.status is ContactStatus.IN_PROGRESS
        assert r.planned is planned

    def test_an_admission_from_ae_is_unplanned_whatever_the_type(self) -> None:
        r = one(
            adt(
                "A01",
                facility=FAC,
                control_id="C3",
                visit="IP1",
                patient_class="E",
                admission_type="C",
            )
        )
        assert r.contact_kind is ContactKind.ADMISSION and r.planned is False

    def test_a08_updates_an_open_visit_and_keeps_a_discharged_one_finished(self) -> None:
        open_ = one(adt("A08", facility=FAC, control_id="C4", visit="V1"))
        assert open_.status is ContactStatus.ARRIVED and open_.ended_at is None
        done = one(adt("A08", facility=FAC, control_id="C5", visit="V1", discharge=ago(hours=1)))
        assert done.status is ContactStatus.FINISHED and done.ended_at is not None

    def test_a11_cancels_the_visit_as_entered_in_error(self) -> None:
        r = one(adt("A11", facility=FAC, control_id="C6", visit="V1"))
        assert r.status is ContactStatus.ENTERED_IN_ERROR

    def test_a13_reopens_the_visit_and_clears_its_end(self) -> None:
        r = one(adt("A13", facility=FAC, control_id="C7", visit="V1", discharge=ago(hours=1)))
        assert r.status is ContactStatus.ARRIVED and r.ended_at is None
        inpatient = one(adt("A13", facility=FAC, control_id="C8", visit="IP1", patient_class="I"))
        assert inpatient.status is ContactStatus.IN_PROGRESS
        # the merge takes the end away (domain.merged)
        now = datetime.now(UTC)
        finished = checked(one(adt("A03", facility=FAC, control_id="C9", visit="V1")), now=now)[1]
        reopened = merged(finished, checked(r, now=now)[1])
        assert reopened is not None and reopened.ended_at is None
        assert reopened.status is ContactStatus.ARRIVED

    def test_outpatient_class_is_an_outpatient_appointment(self) -> None:
        r = one(adt("A04", facility=FAC, control_id="C1", visit="OP1", patient_class="O"))
        assert r.contact_kind is ContactKind.OUTPATIENT_APPOINTMENT

    def test_an_unknown_patient_class_is_unmappable(self) -> None:
        with pytest.raises(UnmappableReport, match="patient class"):
            one(adt("A04", facility=FAC, control_id="C1", visit="V1", patient_class="B"))


class TestAppointments:
    @pytest.mark.parametrize(
        ("trigger", "status"),
        [
            ("S12", ContactStatus.BOOKED),
            ("S14", ContactStatus.BOOKED),
            ("S15", ContactStatus.CANCELLED),
            ("S26", ContactStatus.DID_NOT_ATTEND),
        ],
    )
    def test_siu_events_give_the_appointments_status(
        self, trigger: str, status: ContactStatus
    ) -> None:
        start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
        r = one(siu(trigger, facility=FAC, control_id="S1", appointment="A77", start=start))
        assert r.status is status and r.started_at == start and r.source_ref == "A77"
        assert r.planned is True and r.chief_complaint == "279039007"

    def test_a_gp_practice_source_books_gp_appointments_a_trust_outpatient_ones(self) -> None:
        start = datetime.now(UTC) + timedelta(days=1)
        text = siu("S12", facility="B82001", control_id="S1", appointment="A1", start=start)
        assert one(text, org="B82001").contact_kind is ContactKind.GP_APPOINTMENT
        assert one(text, org="RX1").contact_kind is ContactKind.OUTPATIENT_APPOINTMENT

    def test_a_cancelled_future_appointment_passes_the_checks(self) -> None:
        start = datetime.now(UTC) + timedelta(days=30)
        r = one(siu("S15", facility=FAC, control_id="S2", appointment="A2", start=start))
        _, facts = checked(r, now=datetime.now(UTC))
        assert facts.status is ContactStatus.CANCELLED

    def test_an_appointment_without_a_start_is_unmappable(self) -> None:
        text = siu("S12", facility=FAC, control_id="S3", appointment="A3", start=ago(days=1))
        text = "\r".join(s for s in text.split("\r") if not s.startswith(("SCH", "AIS")))
        text += "\rSCH|PA3|A3"
        with pytest.raises(UnmappableReport, match="no start"):
            one(text)


class TestIdentity:
    def test_the_nhs_number_is_found_by_type_nh_among_other_identifiers(self) -> None:
        assert one(a04()).nhs_number == NHS

    @pytest.mark.parametrize(
        "rep",
        [
            f"{NHS}^^^NHS",
            f"{NHS}^^^&2.16.840.1.113883.2.1.4.1&ISO",
            f"{NHS}^^^^NH",
            "943 476 5919^^^NHS^NH",
        ],
    )
    def test_the_nhs_number_by_authority_oid_or_type(self, rep: str) -> None:
        text = a04(nhs=None).replace("H12345^^^RX1^MR", f"H12345^^^RX1^MR~{rep}")
        assert one(text).nhs_number == NHS

    def test_no_nhs_number_is_unmappable_at_the_check(self) -> None:
        r = one(a04(nhs=None))
        assert r.nhs_number == ""
        with pytest.raises(UnmappableReport, match="NHS number"):
            checked(r, now=datetime.now(UTC))

    def test_an_nhs_number_with_a_wrong_check_digit_is_unmappable(self) -> None:
        with pytest.raises(UnmappableReport, match="check digit"):
            checked(one(a04(nhs="9434765918")), now=datetime.now(UTC))

    def test_a_hospital_number_is_never_taken_for_the_nhs_number(self) -> None:
        text = a04(nhs=None).replace("H12345^^^RX1^MR", "9434765919^^^RX1^MR")
        assert one(text).nhs_number == ""

    def test_the_visit_number_falls_back_to_the_alternate_visit_id(self) -> None:
        text = a04(visit="")
        pv1 = next(s for s in text.split("\r") if s.startswith("PV1"))
        fields = pv1.split("|") + [""] * 60
        fields[50] = "ALT9"
        text = text.replace(pv1, "|".join(fields[:51]))
        assert one(text).source_ref == "ALT9"

    def test_no_visit_number_is_unmappable_at_the_check(self) -> None:
        with pytest.raises(UnmappableReport, match="visit number"):
            checked(one(a04(visit="")), now=datetime.now(UTC))

    def test_the_site_is_kept_when_it_belongs_to_the_source_else_the_source(self) -> None:
        assert one(a04()).source_org == "RX101"
        assert one(a04().replace("^^RX101", "^^RYY01")).source_org == "RX1"
        assert one(a04().replace("^^RX101", "^^")).source_org == "RX1"


class TestCodes:
    def test_snomed_codes_are_read_from_pv2_dg1_and_zed(self) -> None:
        r = one(
            a04(
                diagnoses=["22253000^Pain^SCT", "M54.5^Low back pain^I10", "161891005^^SCT"],
                zed="3|306689006^Discharge to home^SCT",
            )
        )
        assert r.chief_complaint == "279039007"
        assert r.diagnosis_codes == ("22253000", "161891005")
        assert r.attendance_category == "3" and r.discharge_destination == "306689006"

    @pytest.mark.parametrize(
        "system", ["SCT", "SNOMEDCT", "2.16.840.1.113883.6.96", "http://snomed.info/sct"]
    )
    def test_every_name_of_snomed_ct_is_accepted(self, system: str) -> None:
        assert one(a04(chief=f"279039007^Back pain^{system}")).chief_complaint == "279039007"

    def test_the_alternate_coding_is_used_when_the_primary_is_not_snomed(self) -> None:
        r = one(a04(chief="R52^Pain^I10^22253000^Pain^SCT"))
        assert r.chief_complaint == "22253000"

    @pytest.mark.parametrize(
        "chief",
        ["M54.5^Low back pain^I10", "^Fell off a ladder at home", "LBP^Back^L", "279039007"],
    )
    def test_codes_of_other_systems_and_text_are_ignored(self, chief: str) -> None:
        assert one(a04(chief=chief)).chief_complaint is None

    def test_the_zed_chief_complaint_is_used_when_pv2_has_none(self) -> None:
        r = one(a04(chief=None, zed="1||161891005^^SCT"))
        assert r.chief_complaint == "161891005" and r.attendance_category == "1"

    def test_an_attendance_category_outside_ae_is_not_kept(self) -> None:
        r = one(adt("A01", facility=FAC, control_id="C1", visit="IP1", patient_class="I", zed="1"))
        assert r.attendance_category is None

    def test_an_invalid_attendance_category_is_unmappable_at_the_check(self) -> None:
        with pytest.raises(UnmappableReport, match="attendance category"):
            checked(one(a04(zed="7")), now=datetime.now(UTC))

    def test_free_text_never_reaches_the_report(self) -> None:
        secret = "Patient says partner hit her"
        r = one(
            a04(
                chief=f"279039007^{secret}^SCT",
                diagnoses=[f"22253000^{secret}^SCT", f"^{secret}"],
                zed=f"2|306689006^{secret}^SCT",
                extra=[f"NTE|1||{secret}", f"OBX|1|TX|NOTE||{secret}"],
            )
        )
        values = [str(v) for v in dataclasses.asdict(r).values()]
        assert not any(secret in v or "SYNTHETIC" in v or "Leeds" in v for v in values)


class TestTimes:
    def test_a_time_without_an_offset_is_uk_local_time(self) -> None:
        text = a04()
        pv1 = next(s for s in text.split("\r") if s.startswith("PV1"))
        fields = pv1.split("|")
        fields[44] = "20260701120000"  # summer: BST, UTC+1
        r = one(text.replace(pv1, "|".join(fields)))
        assert r.started_at.astimezone(UTC) == datetime(2026, 7, 1, 11, 0, tzinfo=UTC)

    @pytest.mark.parametrize("value", ["2026xx", "20261301", "yesterday", "2026-07-01"])
    def test_a_malformed_time_is_unmappable(self, value: str) -> None:
        text = a04()
        pv1 = next(s for s in text.split("\r") if s.startswith("PV1"))
        fields = pv1.split("|")
        fields[44] = value
        with pytest.raises(UnmappableReport, match="admit date/time"):
            one(text.replace(pv1, "|".join(fields)))


class TestWhatIsTaken:
    @pytest.mark.parametrize(
        ("text", "code"),
        [
            (adt("A02", facility=FAC, control_id="C", visit="V"), "201"),
            (
                adt("A04", facility=FAC, control_id="C", visit="V").replace("ADT^A04", "ORU^R01"),
                "200",
            ),
            (adt("A04", facility=FAC, control_id="C", visit="V", processing="T"), "202"),
            (adt("A04", facility=FAC, control_id="C", visit="V").replace("|2.4|", "|3.0|"), "203"),
        ],
    )
    def test_messages_waymark_does_not_take_are_refused_with_their_code(
        self, text: str, code: str
    ) -> None:
        with pytest.raises(domain.NotTaken) as caught:
            one(text)
        assert caught.value.code == code

    @pytest.mark.parametrize(
        ("text", "why"),
        [
            ("hello world", "MSH"),
            ("", "MSH"),
            ("MSH|^~\\&|PAS", None),
            ("MSH#^~\\&#PAS#RX1", "delimiters"),
            ("MSH|^~&|PAS|RX1", "delimiters"),
            ("MSH|*~\\&|PAS|RX1", "delimiters"),
            ("MSH|^~\\&|PAS|RX1\rpid|1", "segment name"),
            ("MSH|^~\\&|PAS|RX1\r{}|1", "segment name"),
        ],
    )
    def test_unreadable_messages_are_malformed(self, text: str, why: str | None) -> None:
        if why is None:
            domain.read(text)  # a header alone is readable (and then not taken)
            return
        with pytest.raises(domain.Malformed, match=why):
            domain.read(text)

    def test_line_feeds_between_segments_are_read_as_carriage_returns(self) -> None:
        assert one(a04().replace("\r", "\n")).source_ref == "V1"

    def test_adt_without_pv1_is_unmappable(self) -> None:
        text = "\r".join(s for s in a04().split("\r") if not s.startswith("PV1"))
        with pytest.raises(UnmappableReport, match="PV1"):
            one(text)


# any text of a field: the delimiters, escapes and characters python-hl7 splits on, and others
_FIELD_TEXT = st.text(alphabet="AB1 ^~&\\.é-", max_size=12)
_SEGMENT_NAMES = sorted(domain.READ_SEGMENTS - {"MSH"}) + ["NK1", "OBX", "AL1", "ZZ9", "NTE"]


@st.composite
def _messages(draw: st.DrawFn) -> str:
    header = "MSH|^~\\&|" + "|".join(draw(st.lists(_FIELD_TEXT, max_size=14)))
    segments = [
        draw(st.sampled_from(_SEGMENT_NAMES))
        + "|"
        + "|".join(draw(st.lists(_FIELD_TEXT, max_size=8)))
        for _ in range(draw(st.integers(0, 6)))
    ]
    return "\r".join([header, *segments])


def _what_waymark_reads(text: str) -> list[hl7.Segment]:
    """The library's parse of the whole message, then only what `read` keeps: the read
    segments, and PID up to PID-3."""
    return [
        segment[:4] if str(segment[0]) == "PID" else segment
        for segment in hl7.parse(text)
        if str(segment[0]) in domain.READ_SEGMENTS
    ]


class TestParsing:
    """`read` parses with python-hl7's own splitter and a plan made once: the result is the
    library's, for the segments Waymark reads."""

    @given(_messages())
    @settings(max_examples=400, deadline=None)
    def test_a_message_parses_as_the_library_parses_what_waymark_reads(self, text: str) -> None:
        expected = _what_waymark_reads(text)
        message = domain.read(text)
        assert list(message) == expected
        # the library's types at every level (its containers, made by read's factory), so
        # accessors and ACKs work as on the library's parse
        assert isinstance(message, hl7.Message)
        for ours, theirs in zip(message, expected, strict=True):
            assert str(ours) == str(theirs)
            assert type(ours).__mro__[1] is type(theirs)
            assert (ours.separator, ours.esc, ours.separators) == (
                theirs.separator,
                theirs.esc,
                theirs.separators,
            )
            for field_ours, field_theirs in zip(ours, theirs, strict=True):
                assert isinstance(field_ours, type(field_theirs))
                if not isinstance(field_theirs, str):
                    assert field_ours.separator == field_theirs.separator

    def test_a_message_of_read_segments_is_exactly_the_librarys_parse(self) -> None:
        text = a04(diagnoses=["22253000^Pain^SCT"], zed="1|306689006^Home^SCT|")
        text = text.replace(pid(), "PID|1||H12345^^^RX1^MR~" + NHS + "^^^NHS^NH")
        assert domain.read(text) == hl7.parse(text)
        assert str(domain.read(text)) == str(hl7.parse(text))

    def test_names_addresses_and_unread_segments_are_never_parsed(self) -> None:
        text = a04(extra=["NK1|1|SYNTHETIC^SAM|SPO", "OBX|1|TX|||Feels worse at night"])
        message = domain.read(text)
        assert [str(s[0]) for s in message] == ["MSH", "EVN", "PID", "PV1", "PV2"]
        assert len(message.segment("PID")) == 4  # PID-0 (its name) to PID-3
        for text_of_a_person in ("SYNTHETIC", "Test Street", "19720304", "worse at night"):
            assert text_of_a_person not in str(message)
        assert one(text).nhs_number == NHS  # and the identifiers are still there

    def test_an_unread_segment_with_a_bad_name_still_makes_the_message_malformed(self) -> None:
        with pytest.raises(domain.Malformed, match="segment name"):
            domain.read(a04(extra=["obx|1|TX"]))
