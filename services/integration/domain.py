"""The integration service's rules: what a contact report must hold, and whether a report
changes what Waymark already knows. Pure: no I/O. Every channel (HL7 v2, FHIR, bulk extracts)
turns what it received into a `ContactReport` and hands it to the same handler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from shared.identifiers import ORG_CODE, nhs_number_is_valid
from shared.vocabulary import ALWAYS_UNPLANNED, ContactKind, ContactStatus

SNOMED = re.compile(r"[1-9][0-9]{5,17}")
SOURCE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
#: the earliest contact Waymark takes: 12 months of history at go-live, with room to spare
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
#: a contact may be reported a little ahead of our clock (the sender's clock runs fast); a
#: booked appointment may be any time in the next two years
CLOCK_SKEW = timedelta(minutes=10)
BOOKING_HORIZON = timedelta(days=2 * 366)
SCHEDULED_STATUSES = frozenset({ContactStatus.BOOKED, ContactStatus.CANCELLED})
#: statuses of a contact that has not ended: a report of one clears an end reported before
#: (HL7 v2 A13, cancel discharge, reopens a visit)
OPEN_STATUSES = frozenset({ContactStatus.BOOKED, ContactStatus.ARRIVED, ContactStatus.IN_PROGRESS})


class UnmappableReport(ValueError):
    """The message was understood but cannot become a contact: the reason says why, in words an
    operator at the sending system can act on (HL7 v2 answers it with AE)."""


@dataclass(frozen=True)
class ContactReport:
    """A contact as a source reported it, after parsing, before pseudonymisation."""

    source_ref: str
    nhs_number: str
    contact_kind: ContactKind
    status: ContactStatus
    started_at: datetime
    source_org: str
    planned: bool | None = None  # None: as the kind implies (unplanned kinds are unplanned)
    ended_at: datetime | None = None
    chief_complaint: str | None = None
    diagnosis_codes: tuple[str, ...] = field(default_factory=tuple)
    attendance_category: str | None = None
    discharge_destination: str | None = None


@dataclass(frozen=True)
class ContactFacts:
    """What Waymark keeps and publishes of a contact: codes and times, no identifiers."""

    contact_kind: ContactKind
    planned: bool
    status: ContactStatus
    started_at: datetime
    ended_at: datetime | None
    source_org: str
    chief_complaint: str | None
    diagnosis_codes: tuple[str, ...]
    attendance_category: str | None
    discharge_destination: str | None


def checked(report: ContactReport, *, now: datetime) -> tuple[str, ContactFacts]:
    """The report's NHS number (normalised) and its facts, or UnmappableReport saying what is
    wrong."""
    if not report.source_ref or len(report.source_ref) > 200:
        raise UnmappableReport("the contact has no identifier at the source (visit number)")
    nhs = (report.nhs_number or "").replace(" ", "")
    if not nhs_number_is_valid(nhs):
        raise UnmappableReport("the NHS number is missing or fails its check digit")
    if not ORG_CODE.fullmatch(report.source_org or ""):
        raise UnmappableReport(f"the organisation code {report.source_org!r} is not an ODS code")
    for name, at in (("start", report.started_at), ("end", report.ended_at)):
        if at is None:
            continue
        if at.tzinfo is None:
            raise UnmappableReport(f"the {name} time has no time zone")
        if at < EARLIEST:
            raise UnmappableReport(f"the {name} time {at.isoformat()} is before {EARLIEST.year}")
        # a booked appointment, or one cancelled before it came (HL7 SIU S15), may be ahead
        horizon = BOOKING_HORIZON if report.status in SCHEDULED_STATUSES else CLOCK_SKEW
        if at > now + horizon:
            raise UnmappableReport(f"the {name} time {at.isoformat()} is in the future")
    if report.ended_at is not None and report.ended_at < report.started_at:
        raise UnmappableReport("the contact ends before it starts")
    codes = [report.chief_complaint, report.discharge_destination, *report.diagnosis_codes]
    for code in codes:
        if code is not None and not SNOMED.fullmatch(code):
            raise UnmappableReport(f"{code!r} is not a SNOMED CT concept id")
    if len(report.diagnosis_codes) > 20:
        raise UnmappableReport("more than 20 diagnosis codes")
    category = report.attendance_category
    if category is not None and category not in {"1", "2", "3", "4", "5"}:
        raise UnmappableReport(f"attendance category {category!r} is not an ECDS category (1-5)")
    planned = report.planned
    if report.contact_kind in ALWAYS_UNPLANNED:
        planned = False
    elif planned is None:
        planned = True
    return nhs, ContactFacts(
        contact_kind=report.contact_kind,
        planned=planned,
        status=report.status,
        started_at=report.started_at.astimezone(UTC),
        ended_at=report.ended_at.astimezone(UTC) if report.ended_at else None,
        source_org=report.source_org.upper(),
        chief_complaint=report.chief_complaint,
        diagnosis_codes=tuple(dict.fromkeys(report.diagnosis_codes)),
        attendance_category=category,
        discharge_destination=report.discharge_destination,
    )


def merged(known: ContactFacts | None, new: ContactFacts) -> ContactFacts | None:
    """The facts after a new report, or None when it changes nothing (a resend, a duplicate).

    A later message may say less than an earlier one (an A03 discharge without the chief
    complaint the A04 carried): what it leaves out is kept, what it says wins; a report that the
    contact is open again (a cancelled discharge) clears its end. A contact entered
    in error stays so: later messages about it change nothing.
    """
    if known is None:
        return new
    if known.status is ContactStatus.ENTERED_IN_ERROR:
        return None
    result = replace(
        new,
        ended_at=None if new.status in OPEN_STATUSES else new.ended_at or known.ended_at,
        chief_complaint=new.chief_complaint or known.chief_complaint,
        diagnosis_codes=new.diagnosis_codes or known.diagnosis_codes,
        attendance_category=new.attendance_category or known.attendance_category,
        discharge_destination=new.discharge_destination or known.discharge_destination,
    )
    return None if result == known else result


#: one contact reported through two doors (an ED's HL7 v2 feed and the ECDS extract of the same
#: attendance at go-live; a shared care record's FHIR and the PAS's HL7 v2): the same person,
#: kind of contact and provider, starting within this many minutes of each other. Within one
#: door a source's own ids tell contacts apart, so only reports from another channel are
#: matched (services/integration/applying.py). Both feeds take the arrival
#: time from the same PAS, so an hour is generous; two real attendances of one kind at one
#: provider within an hour are one episode of care in every count the rules make.
SAME_CONTACT_MINUTES = 60


def same_contact(known: ContactFacts, new: ContactFacts) -> bool:
    """Whether `new`, from another source, is the contact `known` already is."""
    if ContactStatus.ENTERED_IN_ERROR in (known.status, new.status):
        return False
    if known.contact_kind is not new.contact_kind:
        return False
    if not same_provider(known.source_org, new.source_org):
        return False
    return abs(known.started_at - new.started_at) <= timedelta(minutes=SAME_CONTACT_MINUTES)


def same_provider(a: str, b: str) -> bool:
    """ODS codes of one provider: equal, or a site (5 characters) of the organisation (its
    first 3): RX101 is a site of RX1."""
    a, b = a.upper(), b.upper()
    return a == b or (len(a) == 3 and b.startswith(a)) or (len(b) == 3 and a.startswith(b))
