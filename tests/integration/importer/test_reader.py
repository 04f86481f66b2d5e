"""Reading extracts: CSV with a byte-order mark, quoted commas and blank lines; NDJSON; e-RS
referrals grouped by UBRN; a line that cannot be read is reported, never the end of the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.integration.importer.domain import Kind, Record
from services.integration.importer.reader import Bad, file_sha256, format_of, records, rows_in

HEADER = "attendance_id,nhs_number,arrival_date,arrival_time,chief_complaint,diagnoses\r\n"


def write(tmp_path: Path, name: str, text: str, *, bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


class TestCsv:
    def test_a_byte_order_mark_blank_lines_and_quoted_commas(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "ae.csv",
            HEADER
            + "V1,9434765919,2026-05-01,10:00,161891005,279039007\r\n"
            + "\r\n"
            + ",,,,,\r\n"
            + 'V2,9434765919,2026-05-02,11:00,161891005,"279039007,35489007"\r\n'
            + '"V3",9434765919,2026-05-03,"12:00",161891005,"a ""quoted"" value"\r\n',
            bom=True,
        )
        got = list(records(path, Kind.ECDS, "csv"))
        assert all(isinstance(r, Record) for r in got)
        assert [r.number for r in got] == [2, 5, 6]
        assert [r.fields["attendance_id"] for r in got] == ["V1", "V2", "V3"]  # BOM not in the name
        assert got[1].fields["diagnoses"] == "279039007,35489007"
        assert got[2].fields["diagnoses"] == 'a "quoted" value'

    def test_a_line_with_the_wrong_number_of_columns_is_reported_and_reading_goes_on(
        self, tmp_path: Path
    ) -> None:
        path = write(
            tmp_path,
            "ae.csv",
            HEADER + "V1,9434765919,2026-05-01\nV2,9434765919,2026-05-02,11:00,161891005,\n",
        )
        first, second = records(path, Kind.ECDS, "csv")
        assert isinstance(first, Bad) and first.number == 2 and "3 columns" in first.error
        assert isinstance(second, Record) and second.fields["attendance_id"] == "V2"

    def test_header_names_are_case_and_space_insensitive(self, tmp_path: Path) -> None:
        path = write(tmp_path, "gp.csv", " Appointment_ID , NHS_Number\nA1,9434765919\n")
        [r] = records(path, Kind.GPAD, "csv")
        assert isinstance(r, Record) and r.fields == {
            "appointment_id": "A1",
            "nhs_number": "9434765919",
        }

    def test_an_empty_file_has_no_records(self, tmp_path: Path) -> None:
        assert rows_in(write(tmp_path, "e.csv", ""), Kind.ECDS, "csv") == 0
        assert rows_in(write(tmp_path, "h.csv", HEADER), Kind.ECDS, "csv") == 0

    def test_a_line_that_is_not_utf8_ends_the_reading_with_a_reason(self, tmp_path: Path) -> None:
        path = tmp_path / "latin.csv"
        path.write_bytes(
            HEADER.encode() + "V1,9434765919,2026-05-01,10:00,1,\xe9\n".encode("latin-1")
        )
        [bad] = records(path, Kind.ECDS, "csv")
        assert isinstance(bad, Bad) and "not UTF-8" in bad.error and bad.number == 2


ERS_HEADER = (
    "ubrn,nhs_number,referring_org,receiving_org,specialty,step,step_at,reason,appointment_at\n"
)


class TestErs:
    def test_consecutive_lines_of_a_ubrn_are_one_referral(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "ers.csv",
            ERS_HEADER
            + "U1,9434765919,A81001,RTH,Pain Management,sent,2026-05-01,,\n"
            + "U1,9434765919,A81001,RTH,Pain Management,booked,2026-05-03,,2026-05-10T09:00\n"
            + "U2,9434765919,A81001,RTH,Physiotherapy,sent,2026-05-02,,\n"
            + "U2,9434765919,A81001,RTH,Physiotherapy,rejected,2026-05-04,"
            + "does-not-meet-criteria,\n",
        )
        one, two = records(path, Kind.ERS, "csv")
        assert isinstance(one, Record) and isinstance(two, Record)
        assert (one.number, two.number) == (2, 4)
        assert [s["step"] for s in one.steps] == ["sent", "booked"]
        assert one.steps[1]["appointment_at"] == "2026-05-10T09:00"
        assert two.steps[1]["reason"] == "does-not-meet-criteria"

    def test_a_ubrn_whose_lines_are_apart_is_refused_with_a_reason(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "ers.csv",
            ERS_HEADER
            + "U1,9434765919,A81001,RTH,Pain Management,sent,2026-05-01,,\n"
            + "U2,9434765919,A81001,RTH,Physiotherapy,sent,2026-05-02,,\n"
            + "U1,9434765919,A81001,RTH,Pain Management,accepted,2026-05-03,,\n",
        )
        one, two, three = records(path, Kind.ERS, "csv")
        assert (
            isinstance(three, Bad)
            and three.number == 4
            and "sort the extract by UBRN" in three.error
        )

    def test_ndjson_referrals_carry_their_steps(self, tmp_path: Path) -> None:
        lines = [
            {"ubrn": "U1", "steps": [{"step": "sent", "step_at": "2026-05-01"}]},
            {"ubrn": "U2", "steps": "sent"},
        ]
        path = write(tmp_path, "ers.ndjson", "\n".join(json.dumps(x) for x in lines) + "\n\n")
        one, two = records(path, Kind.ERS, "ndjson")
        assert isinstance(one, Record) and one.steps == ({"step": "sent", "step_at": "2026-05-01"},)
        assert isinstance(two, Bad) and "steps must be a list" in two.error


class TestNdjson:
    def test_objects_blank_lines_a_bom_and_broken_lines(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "ae.ndjson",
            '{"Attendance_ID": "V1", "diagnoses": ["279039007"]}\n\n[1, 2]\n{"attendance_id": \n'
            '{"attendance_id": "V2"}\n',
            bom=True,
        )
        got = list(records(path, Kind.ECDS, "ndjson"))
        assert isinstance(got[0], Record) and got[0].fields["attendance_id"] == "V1"
        assert (
            isinstance(got[1], Bad) and got[1].number == 3 and "not a JSON object" in got[1].error
        )
        assert isinstance(got[2], Bad) and got[2].number == 4
        assert isinstance(got[3], Record) and got[3].number == 5


class TestFiles:
    @pytest.mark.parametrize(
        ("name", "fmt"),
        [("a.csv", "csv"), ("a.CSV", "csv"), ("a.ndjson", "ndjson"), ("a.jsonl", "ndjson")],
    )
    def test_the_format_comes_from_the_name(self, name: str, fmt: str) -> None:
        assert format_of(Path(name), None) == fmt

    def test_an_unknown_extension_needs_format(self) -> None:
        with pytest.raises(ValueError, match="--format"):
            format_of(Path("extract.dat"), None)
        assert format_of(Path("extract.dat"), "csv") == "csv"

    def test_the_digest_is_the_files_sha256(self, tmp_path: Path) -> None:
        path = write(tmp_path, "x.csv", "abc")
        assert (
            file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        )


def test_a_line_that_is_not_utf8_is_reported_and_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(
        HEADER.encode()
        + "V1,9434765919,2026-05-01,10:00,1,\xe9\n".encode("latin-1")
        + b"V2,9434765919,2026-05-01,10:00,1,\n"
    )
    bad, good = records(path, Kind.ECDS, "csv")
    assert isinstance(bad, Bad) and bad.number == 2
    assert isinstance(good, Record) and good.fields["attendance_id"] == "V2"
