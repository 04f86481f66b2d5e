"""Synthetic HL7 v2 messages for the tests: ADT and SIU as a hospital PAS sends them (NHS
England ADT specification layout), with 999-range NHS numbers and made-up names and text."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

NHS = "9434765919"  # a valid check digit, in the range reserved for testing


def dtm(at: datetime) -> str:
    """An HL7 DTM with its UTC offset."""
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def ago(**kw: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)


def msh(facility: str, control_id: str, kind: str, *, processing: str = "P") -> str:
    structure = {"ADT": "ADT_A01", "SIU": "SIU_S12"}.get(kind.split("^")[0], "")
    return (
        f"MSH|^~\\&|PAS|{facility}|WAYMARK|ICS-1|{dtm(ago(minutes=1))}||{kind}^{structure}|"
        f"{control_id}|{processing}|2.4|||AL|NE|GBR|UNICODE UTF-8"
    )


def pid(nhs: str | None = NHS) -> str:
    ids = "H12345^^^RX1^MR" + (f"~{nhs}^^^NHS^NH" if nhs is not None else "")
    return f"PID|1||{ids}||SYNTHETIC^ALEX^^^MX||19720304|U|||1 Test Street^^Leeds^^LS1 1AA"


def pv1(
    visit: str,
    *,
    patient_class: str = "E",
    site: str = "RX101",
    admission_type: str = "",
    admit: datetime | None = None,
    discharge: datetime | None = None,
) -> str:
    fields = [""] * 51
    fields[1] = "1"
    fields[2] = patient_class
    fields[3] = f"MAJORS^BAY 2^^{site}"
    fields[4] = admission_type
    fields[19] = visit
    fields[44] = dtm(admit) if admit else ""
    fields[45] = dtm(discharge) if discharge else ""
    return "PV1|" + "|".join(fields[1:]).rstrip("|")


def adt(
    trigger: str,
    *,
    facility: str,
    control_id: str,
    visit: str,
    nhs: str | None = NHS,
    admit: datetime | None = None,
    discharge: datetime | None = None,
    patient_class: str = "E",
    admission_type: str = "",
    chief: str | None = "279039007^Low back pain^SCT",
    diagnoses: Sequence[str] = (),
    zed: str | None = None,
    extra: Sequence[str] = (),
    processing: str = "P",
) -> str:
    admit = admit or ago(hours=3)
    segments = [
        msh(facility, control_id, f"ADT^{trigger}", processing=processing),
        f"EVN|{trigger}|{dtm(ago(minutes=2))}",
        pid(nhs),
        pv1(
            visit,
            patient_class=patient_class,
            admission_type=admission_type,
            admit=admit,
            discharge=discharge,
        ),
    ]
    if chief is not None:
        segments.append(f"PV2|||{chief}")
    segments += [f"DG1|{i}||{code}" for i, code in enumerate(diagnoses, 1)]
    if zed is not None:
        segments.append(f"ZED|{zed}")
    segments += list(extra)
    return "\r".join(segments)


def siu(
    trigger: str,
    *,
    facility: str,
    control_id: str,
    appointment: str,
    start: datetime,
    nhs: str | None = NHS,
    reason: str = "279039007^Low back pain^SCT",
) -> str:
    return "\r".join(
        [
            msh(facility, control_id, f"SIU^{trigger}"),
            f"SCH|P{appointment}|{appointment}|||||{reason}|NORMAL^Routine^HL70277|15|MIN|"
            f"^^15^{dtm(start)}^{dtm(start + timedelta(minutes=15))}",
            pid(nhs),
            "RGS|1",
            f"AIS|1||PHYSIO^Physiotherapy|{dtm(start)}",
        ]
    )
