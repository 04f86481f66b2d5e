"""The bulk extracts' rules: what a row of each kind must hold and what it becomes. Pure: no
I/O. An A&E row (ECDS-shaped) or a GP appointment row (GPAD-shaped) becomes a `ContactReport`
for the integration service's own handler; an e-RS worklist referral (its dated steps) becomes
the body of the referrals service's historical import. A row that cannot becomes `RowRefused`
with a reason an analyst can act on, which never repeats an NHS number.

The columns are documented for the ICS's analysts in docs/integration/bulk.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from services.integration.domain import ContactReport, UnmappableReport, checked
from shared.identifiers import ORG_CODE, nhs_number_is_valid
from shared.vocabulary import Category, ContactKind, ContactStatus, ReferralState

#: the extracts' local times (ECDS and GPAD record clock time in England)
LONDON = ZoneInfo("Europe/London")
#: a referral's id at its source, as the referrals service takes it (an e-RS UBRN is 12 digits)
SOURCE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
ROW_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}")
REASON = re.compile(r"[a-z0-9-]{1,60}")
_TEN_DIGITS = re.compile(r"(?<![0-9])([0-9]{3}) ?([0-9]{3}) ?([0-9]{4})(?![0-9])")


class Kind(StrEnum):
    """The three extracts."""

    ECDS = "ecds"  # A&E attendances (and 111, out-of-hours, crisis contacts), ECDS-shaped
    GPAD = "gpad"  # GP appointments, GPAD-shaped
    ERS = "ers"  # referrals from an e-RS worklist extract, one per UBRN with its dated steps


class RowRefused(ValueError):
    """The row cannot be imported; the reason says why (and never holds an NHS number)."""


@dataclass(frozen=True)
class Record:
    """One unit of an extract: a row (ECDS, GPAD), or a referral with its steps (e-RS)."""

    number: int  # the row's line number (of its first line, for an e-RS referral in CSV)
    fields: Mapping[str, Any]
    steps: tuple[Mapping[str, Any], ...] = ()


def masked(text: str) -> str:
    """The text with every valid NHS number in it blanked (reports and reasons never hold one)."""

    def hide(m: re.Match[str]) -> str:
        return "[NHS number]" if nhs_number_is_valid("".join(m.groups())) else m.group(0)

    return _TEN_DIGITS.sub(hide, text)


# --- fields ------------------------------------------------------------------------------------


def text(fields: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowRefused(f"{name} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowRefused(f"{name} must be text")
    return str(value).strip()


def key(fields: Mapping[str, Any], name: str) -> str:
    value = text(fields, name, required=True)
    assert value is not None
    if not ROW_KEY.fullmatch(value):
        raise RowRefused(
            f"{name} {masked(value)[:40]!r} is not an identifier (letters, digits, ./:-)"
        )
    return value


def nhs_number(fields: Mapping[str, Any], name: str = "nhs_number") -> str:
    value = (text(fields, name, required=True) or "").replace(" ", "")
    if not nhs_number_is_valid(value):
        raise RowRefused(f"{name} is not a valid NHS number (10 digits, Modulus 11 check digit)")
    return value


def org(fields: Mapping[str, Any], name: str, *, default: str | None = None) -> str:
    value = text(fields, name) or default
    if value is None:
        raise RowRefused(f"{name} is missing")
    if not ORG_CODE.fullmatch(value):
        raise RowRefused(f"{name} {value[:30]!r} is not an ODS code")
    return value.upper()


def _verhoeff_ok(digits: str) -> bool:
    """SNOMED CT identifiers end in a Verhoeff check digit (SNOMED CT Technical Implementation
    Guide, 'Check-digit computation')."""
    d = (
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
        (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
        (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
        (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
        (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
        (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
        (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
        (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
        (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
        (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
    )
    p = (
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
        (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
        (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
        (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
        (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
        (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
        (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
        (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
    )
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = d[c][p[i % 8][int(ch)]]
    return c == 0


def snomed(value: str, name: str) -> str:
    """A SNOMED CT concept id: 6-18 digits, no leading zero, a valid Verhoeff check digit, and
    a concept's partition identifier (00 or 10: the two digits before the check digit)."""
    if not re.fullmatch(r"[1-9][0-9]{5,17}", value):
        raise RowRefused(f"{name} {masked(value)[:30]!r} is not a SNOMED CT concept id")
    if not _verhoeff_ok(value):
        raise RowRefused(f"{name} {masked(value)!r} fails the SNOMED CT check digit")
    if value[-3:-1] not in ("00", "10"):
        raise RowRefused(f"{name} {masked(value)!r} is not a concept id (its partition)")
    return value


def codes(fields: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = fields.get(name)
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list) else re.split(r"[;|\s]+", str(value).strip())
    return tuple(snomed(str(v).strip(), name) for v in items if str(v).strip())


def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    m = re.fullmatch(r"([0-9]{2})/([0-9]{2})/([0-9]{4})", value)  # dd/mm/yyyy, as UK tools save
    if m:
        try:
            return date(int(m[3]), int(m[2]), int(m[1]))
        except ValueError:
            pass
    raise RowRefused(f"{name} {value[:30]!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")


def local_time(fields: Mapping[str, Any], date_name: str, time_name: str) -> datetime | None:
    """A date and a clock time of the extract (England's local time) as an aware time; None when
    the date is empty. A date alone reads as midnight."""
    day = text(fields, date_name)
    if day is None:
        if text(fields, time_name) is not None:
            raise RowRefused(f"{time_name} is given without {date_name}")
        return None
    when = _date(day, date_name)
    clock = text(fields, time_name)
    at = time()
    if clock is not None:
        try:
            at = time.fromisoformat(clock if len(clock) != 4 else f"{clock[:2]}:{clock[2:]}")
        except ValueError:
            raise RowRefused(
                f"{time_name} {clock[:20]!r} is not a time (HH:MM or HH:MM:SS)"
            ) from None
        if at.tzinfo is not None:
            raise RowRefused(f"{time_name} carries an offset; the extract's times are local")
    return datetime.combine(when, at, tzinfo=LONDON)


def instant(fields: Mapping[str, Any], name: str, *, required: bool = False) -> datetime | None:
    """A date-time: ISO 8601 with an offset, or without one as England's local time."""
    value = text(fields, name, required=required)
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        if re.fullmatch(r"[0-9]{2}/[0-9]{2}/[0-9]{4}", value):
            return datetime.combine(_date(value, name), time(), tzinfo=LONDON)
        raise RowRefused(f"{name} {value[:40]!r} is not a date-time (ISO 8601)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=LONDON)


def flag(fields: Mapping[str, Any], name: str) -> bool | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("y", "yes", "true", "1"):
        return True
    if word in ("n", "no", "false", "0"):
        return False
    raise RowRefused(f"{name} {str(value)[:20]!r} is not Y or N")


# --- A&E attendances (ECDS-shaped) and other unplanned contacts -----------------------------

ECDS_KINDS = {
    "": ContactKind.AE_ATTENDANCE,
    "ae_attendance": ContactKind.AE_ATTENDANCE,
    "nhs_111": ContactKind.NHS_111,
    "out_of_hours": ContactKind.OUT_OF_HOURS,
    "crisis_team": ContactKind.CRISIS_TEAM,
}


def ecds_contact(record: Record, *, default_org: str | None = None) -> ContactReport:
    f = record.fields
    kind_word = (text(f, "contact_kind") or "").lower()
    if kind_word not in ECDS_KINDS:
        allowed = ", ".join(k for k in ECDS_KINDS if k)
        raise RowRefused(f"contact_kind {kind_word[:30]!r} is not one of {allowed}")
    arrival = local_time(f, "arrival_date", "arrival_time")
    if arrival is None:
        raise RowRefused("arrival_date is missing")
    departure = local_time(f, "departure_date", "departure_time")
    category = text(f, "attendance_category")
    if category is not None and category not in {"1", "2", "3", "4", "5"}:
        raise RowRefused(f"attendance_category {category[:10]!r} is not an ECDS category (1-5)")
    complaint = text(f, "chief_complaint")
    destination = text(f, "discharge_destination")
    return ContactReport(
        source_ref=key(f, "attendance_id"),
        nhs_number=nhs_number(f),
        contact_kind=ECDS_KINDS[kind_word],
        status=ContactStatus.FINISHED if departure else ContactStatus.ARRIVED,
        started_at=arrival,
        ended_at=departure,
        source_org=org(f, "provider_ods", default=default_org),
        chief_complaint=snomed(complaint, "chief_complaint") if complaint else None,
        diagnosis_codes=codes(f, "diagnoses"),
        attendance_category=category,
        discharge_destination=snomed(destination, "discharge_destination") if destination else None,
    )


# --- GP appointments (GPAD-shaped) --------------------------------------------------------------

GPAD_STATUS = {
    "attended": ContactStatus.FINISHED,
    "dna": ContactStatus.DID_NOT_ATTEND,
    "did not attend": ContactStatus.DID_NOT_ATTEND,
    "cancelled": ContactStatus.CANCELLED,
    "booked": ContactStatus.BOOKED,
}
#: GPAD's appointment modes (NHS Digital, Appointments in General Practice)
GPAD_MODES = {"face-to-face", "telephone", "home visit", "video conference/online", "unknown"}
#: GPAD's "time between booking and appointment"; only Same Day makes an appointment unplanned
GPAD_LEAD = {
    "same day",
    "1 day",
    "2 to 7 days",
    "8 to 14 days",
    "15 to 21 days",
    "22 to 28 days",
    "more than 28 days",
    "unknown / data quality",
}


def gpad_contact(record: Record, *, default_org: str | None = None) -> ContactReport:
    f = record.fields
    status_word = (text(f, "appt_status", required=True) or "").lower()
    if status_word not in GPAD_STATUS:
        raise RowRefused(
            f"appt_status {status_word[:20]!r} is not Attended, DNA, Cancelled or Booked"
        )
    mode = (text(f, "appt_mode") or "unknown").lower()
    if mode not in GPAD_MODES:
        raise RowRefused(f"appt_mode {mode[:30]!r} is not a GPAD appointment mode")
    lead = (text(f, "time_between_book_and_appt") or "unknown / data quality").lower()
    if lead not in GPAD_LEAD:
        raise RowRefused(f"time_between_book_and_appt {lead[:30]!r} is not a GPAD interval")
    start = local_time(f, "appointment_date", "appointment_time")
    if start is None:
        raise RowRefused("appointment_date is missing")
    urgent = flag(f, "urgent")
    return ContactReport(
        source_ref=key(f, "appointment_id"),
        nhs_number=nhs_number(f),
        contact_kind=ContactKind.GP_APPOINTMENT,
        status=GPAD_STATUS[status_word],
        started_at=start,
        source_org=org(f, "practice_ods", default=default_org),
        planned=not (bool(urgent) or lead == "same day"),
    )


def contact(kind: Kind, record: Record, *, now: datetime, default_org: str | None) -> ContactReport:
    """The row as a contact report, checked as the handler will check it (RowRefused if not)."""
    report = (ecds_contact if kind is Kind.ECDS else gpad_contact)(record, default_org=default_org)
    try:
        checked(report, now=now)
    except UnmappableReport as exc:
        raise RowRefused(masked(str(exc))) from None
    return report


def record_key(kind: Kind, record: Record) -> str:
    """The row's identifier at its source, for the report (never an NHS number)."""
    name = {Kind.ECDS: "attendance_id", Kind.GPAD: "appointment_id", Kind.ERS: "ubrn"}[kind]
    value = record.fields.get(name)
    return masked(str(value).strip())[:100] if value not in (None, "") else ""


# --- referrals from an e-RS worklist extract ----------------------------------------------

#: an e-RS step as the extract names it -> the referral state it reached
STEPS: Mapping[str, ReferralState] = {
    "sent": ReferralState.SUBMITTED,
    "submitted": ReferralState.SUBMITTED,
    "accepted": ReferralState.ACCEPTED,
    "rejected": ReferralState.REJECTED,
    "returned": ReferralState.RETURNED,
    "booked": ReferralState.BOOKED,
    "attended": ReferralState.ATTENDED,
    "dna": ReferralState.DID_NOT_ATTEND,
    "did_not_attend": ReferralState.DID_NOT_ATTEND,
    "on_hold": ReferralState.ON_HOLD,
    "discharged": ReferralState.DISCHARGED,
    "cancelled": ReferralState.CANCELLED,
}
#: e-RS priorities; a two-week-wait referral is urgent in Waymark's two priorities
PRIORITIES = {"routine": "routine", "urgent": "urgent", "2ww": "urgent", "two week wait": "urgent"}
#: e-RS specialties an ICS's pain and mental health pathways use, as Waymark's categories (a
#: Waymark category code is taken as it is)
SPECIALTIES: Mapping[str, Category] = {
    "pain management": Category.PAIN_MANAGEMENT_PROGRAMME,
    "physiotherapy": Category.MSK_PHYSIOTHERAPY,
    "musculoskeletal": Category.MSK_PHYSIOTHERAPY,
    "mental health - adult": Category.TALKING_THERAPIES_LTC,
    "talking therapies": Category.TALKING_THERAPIES_LTC,
    "social prescribing": Category.SOCIAL_PRESCRIBING,
}
DIRECTORY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def _category(value: str) -> Category:
    try:
        return Category(value)
    except ValueError:
        pass
    found = SPECIALTIES.get(value.lower())
    if found is None:
        raise RowRefused(f"specialty {value[:40]!r} maps to no Waymark category of service")
    return found


def referral_history(
    record: Record,
    *,
    source_system: str,
    now: datetime,
    service_map: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The referrals service's historical import body for one UBRN and its dated steps."""
    f = record.fields
    ubrn = text(f, "ubrn", required=True) or ""
    if not SOURCE_REF.fullmatch(ubrn):
        raise RowRefused(
            f"ubrn {masked(ubrn)[:40]!r} is not a referral id (up to 64 letters, digits, ._:-)"
        )
    priority_word = (text(f, "priority") or "routine").lower()
    if priority_word not in PRIORITIES:
        raise RowRefused(f"priority {priority_word[:20]!r} is not Routine, Urgent or 2WW")
    service = text(f, "service_id")
    to_service = None
    if service is not None:
        to_service = (service_map or {}).get(service)
        if to_service is None and DIRECTORY_ID.fullmatch(service) and not service.isdigit():
            to_service = service  # a Waymark directory id
    reasons = list(codes(f, "reason_codes"))
    practice = text(f, "registered_practice")
    history = _steps(record.steps, now=now)
    return {
        "source_system": source_system,
        "source_ref": ubrn,
        "nhs_number": nhs_number(f),
        "from_org": org(f, "referring_org"),
        "to_org": org(f, "receiving_org"),
        "to_service_id": to_service,
        "service_category": _category(text(f, "specialty", required=True) or "").value,
        "priority": PRIORITIES[priority_word],
        "reason_codes": reasons,
        "registered_practice": org(f, "registered_practice") if practice else None,
        "history": history,
    }


def _steps(steps: Sequence[Mapping[str, Any]], *, now: datetime) -> list[dict[str, Any]]:
    if not steps:
        raise RowRefused("the referral has no steps")
    out: list[dict[str, Any]] = []
    previous: datetime | None = None
    for i, step in enumerate(steps, start=1):
        word = (text(step, "step", required=True) or "").lower()
        if word not in STEPS:
            raise RowRefused(f"step {i}: {word[:20]!r} is not one of {', '.join(STEPS)}")
        state = STEPS[word]
        at = instant(step, "step_at", required=True)
        assert at is not None
        if at > now:
            raise RowRefused(f"step {i} ({word}) is dated in the future")
        if previous is not None and at < previous:
            raise RowRefused(f"step {i} ({word}) is dated before the step it follows")
        if i == 1 and state is not ReferralState.SUBMITTED:
            raise RowRefused("the first step must be sent (the referral's submission)")
        if i > 1 and state is ReferralState.SUBMITTED:
            raise RowRefused(f"step {i}: a referral is sent once")
        reason = text(step, "reason")
        if reason is not None and not REASON.fullmatch(reason):
            raise RowRefused(f"step {i}: reason {reason[:30]!r} is not a reason code")
        item: dict[str, Any] = {"state": state.value, "at": at.astimezone(UTC).isoformat()}
        if reason is not None:
            item["reason"] = reason
        appointment = instant(step, "appointment_at")
        if state is ReferralState.BOOKED:
            if appointment is None:
                raise RowRefused(f"step {i}: a booking needs its appointment_at")
            item["appointment_at"] = appointment.astimezone(UTC).isoformat()
        elif appointment is not None:
            raise RowRefused(f"step {i}: only a booking has an appointment_at")
        out.append(item)
        previous = at
    return out
