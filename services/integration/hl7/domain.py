"""HL7 v2 ADT and SIU messages as contact reports: which fields Waymark reads, and what each
event means for a contact. Pure: parsing with the `hl7` library (python-hl7), no I/O.

Fields read (NHS England HL7 v2 ADT Message Specification, HSCIC ITK "HL7 V2 ADT Message
Specifications" v1.1, built on HL7 v2.4; docs/integration-hl7.md lists them with examples):

- MSH-4 sending facility (the ODS code the source registered), MSH-9 message type and trigger,
  MSH-10 control id, MSH-11 processing id (P only), MSH-12 version (2.x).
- PID-3 (repeating CX): the repetition whose identifier type (CX-5) is NH, or whose assigning
  authority (CX-4) is NHS or the NHS number OID 2.16.840.1.113883.2.1.4.1. Nothing else of PID
  is read: no name, address or date of birth.
- PV1-2 patient class (E emergency, I inpatient, O outpatient), PV1-3.4 the site (an ODS site
  code of the source's organisation), PV1-4 admission type (HL7 table 0007 or the NHS Data
  Dictionary's admission method: emergency codes make an admission unplanned), PV1-19 visit
  number (the contact's id at the source; PV1-50 alternate visit id when PV1-19 is empty),
  PV1-44 admit and PV1-45 discharge date/time (EVN-6, then EVN-2, then MSH-7 when empty).
- Codes, SNOMED CT only (a coded element whose coding system, CWE-3 or CWE-6, is SCT or the
  SNOMED CT OID/URI): PV2-3 admit reason = chief complaint; DG1-3 = diagnoses; the Z-segment
  ZED (Waymark's ECDS convention, there being no national v2 home for these ECDS items):
  ZED-1 ECDS attendance category (1-5), ZED-2 discharge destination (SNOMED CT), ZED-3 chief
  complaint (SNOMED CT, used when PV2-3 has none). Text (CWE-2, CWE-5, NTE, free-text fields)
  is never read.
- SIU: SCH-2 filler appointment id (SCH-1 placer id when empty) as the contact's id, SCH-11.4
  or AIS-4 the start, SCH-7 appointment reason as chief complaint when SNOMED CT coded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import hl7

# python-hl7's parse plan and splitter (what `hl7.parse` runs), pinned at hl7==0.4.5
from hl7.parser import _ParsePlan, _split, create_parse_plan

from services.integration.domain import ContactReport, UnmappableReport
from shared.vocabulary import ContactKind, ContactStatus

#: coding systems (CWE-3/CWE-6) that name SNOMED CT: HL7 table 0396's SCT, its OID and FHIR URI
SNOMED_SYSTEMS = frozenset(
    {
        "SCT",
        "SNOMEDCT",
        "SNOMED-CT",
        "SNOMED CT",
        "2.16.840.1.113883.6.96",
        "http://snomed.info/sct",
    }
)
_SNOMED_UPPER = frozenset(s.upper() for s in SNOMED_SYSTEMS)
#: PID-3: an NHS number's identifier type (HL7 table 0203) and assigning authorities
NHS_NUMBER_TYPE = "NH"
NHS_NUMBER_AUTHORITIES = frozenset({"NHS", "2.16.840.1.113883.2.1.4.1"})
#: HL7 v2 times without an offset are the sender's local time: in England, UK time
UK = ZoneInfo("Europe/London")
#: PV1-4 values meaning an emergency admission: HL7 table 0007 (A accident, E emergency,
#: U urgent) and the NHS Data Dictionary's ADMISSION METHOD 2x codes (emergency admissions)
EMERGENCY_ADMISSIONS = frozenset(
    {"A", "E", "U", "21", "22", "23", "24", "25", "28", "2A", "2B", "2C", "2D"}
)
#: ODS codes of GP practices: a letter and five digits (A81001); trusts are three characters
#: (RX1) and their sites five (RX101)
GP_PRACTICE = re.compile(r"[A-Z][0-9]{5}")
#: HL7 DTM: YYYY[MM[DD[HH[MM[SS[.S{1,4}]]]]]][+/-ZZZZ]; Waymark needs at least a day
DTM = re.compile(r"[0-9]{8}([0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,4})?)?)?)?([+-][0-9]{4})?")
STANDARD_ENCODING = "^~\\&"
SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
#: the segments Waymark reads (the module docstring lists their fields); no other is parsed
READ_SEGMENTS = frozenset({"MSH", "EVN", "PID", "PV1", "PV2", "DG1", "ZED", "SCH", "AIS"})

ADT_EVENTS = frozenset({"A01", "A03", "A04", "A08", "A11", "A13"})
SIU_EVENTS = {
    "S12": ContactStatus.BOOKED,
    "S14": ContactStatus.BOOKED,
    "S15": ContactStatus.CANCELLED,
    "S26": ContactStatus.DID_NOT_ATTEND,
}


class Malformed(Exception):
    """Not an HL7 v2 message Waymark can read (no MSH, other delimiters, no parse): AR."""


class NotTaken(Exception):
    """A well-formed message Waymark does not take (a message type, event, processing id or
    version it does not handle): AR. `code` is HL7 table 0357's error code."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class Header:
    sending_facility: str
    control_id: str
    message_type: str
    trigger: str


def read(text: str) -> hl7.Message:
    """Parse one message; Malformed when it is not HL7 v2 pipe-and-hat with the standard
    delimiters (MSH|^~\\&).

    Only what Waymark reads is parsed: the segments in READ_SEGMENTS, and of PID its first three
    fields (PID-3, the identifiers). A name, an address, a next of kin or a note never becomes
    a parsed object here, and the parse costs less (the library's parse was a third of the
    listener's CPU, profiled)."""
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    if not text.startswith("MSH"):
        raise Malformed("the message does not start with an MSH segment")
    if text[3:4] != "|" or text[4:8] != STANDARD_ENCODING:
        raise Malformed(
            "the message does not use the standard delimiters (MSH-1 '|', MSH-2 '^~\\&')"
        )
    kept = []
    for segment in text.strip().split("\r"):  # stripped as `hl7.parse` strips
        name = segment.split("|", 1)[0]
        if not SEGMENT_NAME.fullmatch(name):
            raise Malformed(f"{name[:10]!r} is not a segment name")
        if name == "PID":
            kept.append("|".join(segment.split("|", 4)[:4]))
        elif name in READ_SEGMENTS:
            kept.append(segment)
    try:
        return _parse("\r".join(kept))
    except Exception as exc:  # the library raises several kinds on unparseable text
        raise Malformed(f"the message cannot be parsed: {exc}") from None


class _Plan(_ParsePlan):
    """python-hl7's parse plan, as its `next()` allows subclasses to be (it builds the next level
    with `self.__class__`): each level's next plan is made once instead of once per field, and
    `applies` looks for a level's separators without recomputing them. What a message parses
    to is the library's own result (tests/integration/hl7/test_domain.py compares them)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._tail = self.separators[self.separators.find(self.separator) :]
        self._next: _Plan | None = None

    def next(self) -> _Plan | None:
        if self._next is None and len(self.containers) > 1:
            self._next = super().next()
        return self._next

    def applies(self, text: str) -> bool:
        for separator in self._tail:
            if separator in text:
                return True
        return False


def _lean(container: type[hl7.Container], level: int) -> type[hl7.Container]:
    """`container` as python-hl7 makes it, with the attributes its own `__init__` sets but
    without re-checking the separators for every part (a fifth of a parse, profiled). The
    library's Factory is how it lets a caller choose the containers a parse builds."""

    def __init__(  # type: ignore[no-untyped-def]
        self, separator=None, sequence=(), esc="\\", separators="\r|~^&", factory=None
    ) -> None:
        list.__init__(self, sequence)
        self.separator = separators[level]
        self.esc = esc
        self.separators = separators
        self.factory = factory if factory is not None else _Factory

    return type(container.__name__, (container,), {"__init__": __init__})


class _Factory(hl7.Factory):  # type: ignore[misc]
    create_message = _lean(hl7.Message, 0)
    create_segment = _lean(hl7.Segment, 1)
    create_field = _lean(hl7.Field, 2)
    create_repetition = _lean(hl7.Repetition, 3)
    create_component = _lean(hl7.Component, 4)


def _standard_plan() -> _Plan:
    """The plan of every message `read` takes (the standard delimiters, checked first)."""
    plan = create_parse_plan("MSH|" + STANDARD_ENCODING + "|", _Factory)
    return _Plan(plan.separator, plan.separators, plan.containers, plan.esc, plan.factory)


_PLAN = _standard_plan()


def _parse(text: str) -> hl7.Message:
    """`hl7.parse(text)` for a message with the standard delimiters, with the plan made once."""
    return _split(text, _PLAN)


def header(message: hl7.Message) -> Header:
    """The message's header fields, read once per parsed message (kept on it, as the index of
    its segments is)."""
    head: Header | None = message.__dict__.get(_HEADER)
    if head is None:
        head = Header(
            sending_facility=_get(message, "MSH.F4.R1.C1"),
            control_id=_get(message, "MSH.F10"),
            message_type=_get(message, "MSH.F9.R1.C1"),
            trigger=_get(message, "MSH.F9.R1.C2"),
        )
        message.__dict__[_HEADER] = head
    return head


def check_taken(message: hl7.Message) -> None:
    """NotTaken unless this is a production ADT/SIU message of an event Waymark maps."""
    head = header(message)
    processing = _get(message, "MSH.F11.R1.C1")
    if processing != "P":
        raise NotTaken(
            f"processing id {processing or '(empty)'} is not taken (production P only)", "202"
        )
    version = _get(message, "MSH.F12.R1.C1")
    if not version.startswith("2."):
        raise NotTaken(f"HL7 version {version or '(empty)'} is not taken (2.x only)", "203")
    if head.message_type == "ADT":
        if head.trigger not in ADT_EVENTS:
            raise NotTaken(f"ADT^{head.trigger} is not taken", "201")
    elif head.message_type == "SIU":
        if head.trigger not in SIU_EVENTS:
            raise NotTaken(f"SIU^{head.trigger} is not taken", "201")
    else:
        raise NotTaken(f"message type {head.message_type or '(empty)'} is not taken", "200")


def reports(message: hl7.Message, *, org_code: str) -> list[ContactReport]:
    """The contact this message reports (one). `org_code` is the registered source's
    organisation. Raises NotTaken or UnmappableReport."""
    check_taken(message)
    head = header(message)
    if head.message_type == "SIU":
        return [_appointment(message, head, org_code)]
    return [_visit(message, head, org_code)]


def nhs_number(message: hl7.Message) -> str:
    """The NHS number among PID-3's repetitions ('' when none)."""
    for rep in _repetitions(message, "PID", 3):
        authority = {_part(rep, 4, 1), _part(rep, 4, 2)}
        if _part(rep, 5) == NHS_NUMBER_TYPE or authority & NHS_NUMBER_AUTHORITIES:
            return _part(rep, 1).replace(" ", "")
    return ""


def _visit(message: hl7.Message, head: Header, org_code: str) -> ContactReport:
    if not _has(message, "PV1"):
        raise UnmappableReport(f"ADT^{head.trigger} without a PV1 segment")
    patient_class = _get(message, "PV1.F2.R1.C1")
    kind = {
        "E": ContactKind.AE_ATTENDANCE,
        "I": ContactKind.ADMISSION,
        "O": ContactKind.OUTPATIENT_APPOINTMENT,
    }.get(patient_class)
    if head.trigger == "A01":
        kind = ContactKind.ADMISSION  # an admission from A&E is an admission
    if kind is None:
        raise UnmappableReport(
            f"patient class (PV1-2) {patient_class or '(empty)'} is not E, I or O"
        )
    started = _time(message, "PV1.F44", "admit date/time (PV1-44)") or _event_time(message)
    ended = _time(message, "PV1.F45", "discharge date/time (PV1-45)")
    status = _visit_status(head.trigger, kind, ended)
    if head.trigger == "A03":
        ended = ended or _event_time(message)
    elif status is not ContactStatus.FINISHED:
        ended = None  # a cancelled discharge (A13) or an open visit has no end yet
    planned: bool | None = None
    if kind is ContactKind.ADMISSION:
        admission_type = _get(message, "PV1.F4.R1.C1").upper()
        planned = not (admission_type in EMERGENCY_ADMISSIONS or patient_class == "E")
    chief = _snomed(message, "PV2", 3) or _snomed(message, "ZED", 3)
    return ContactReport(
        source_ref=_get(message, "PV1.F19.R1.C1") or _get(message, "PV1.F50.R1.C1"),
        nhs_number=nhs_number(message),
        contact_kind=kind,
        status=status,
        started_at=started,
        ended_at=ended,
        source_org=_site(message, "PV1.F3.R1.C4", org_code),
        planned=planned,
        chief_complaint=chief,
        diagnosis_codes=tuple(_all_snomed(message, "DG1", 3)),
        attendance_category=(
            (_get(message, "ZED.F1.R1.C1") or None) if kind is ContactKind.AE_ATTENDANCE else None
        ),
        discharge_destination=_snomed(message, "ZED", 2),
    )


def _visit_status(trigger: str, kind: ContactKind, ended: datetime | None) -> ContactStatus:
    open_status = (
        ContactStatus.IN_PROGRESS if kind is ContactKind.ADMISSION else ContactStatus.ARRIVED
    )
    if trigger == "A03":
        return ContactStatus.FINISHED
    if trigger == "A11":
        return ContactStatus.ENTERED_IN_ERROR
    if trigger == "A08" and ended is not None:
        return ContactStatus.FINISHED  # an update of a discharged visit still carries PV1-45
    return open_status  # A01, A04, A13 (cancel discharge: open again), A08 of an open visit


def _appointment(message: hl7.Message, head: Header, org_code: str) -> ContactReport:
    if not _has(message, "SCH"):
        raise UnmappableReport(f"SIU^{head.trigger} without an SCH segment")
    kind = (
        ContactKind.GP_APPOINTMENT
        if GP_PRACTICE.fullmatch(org_code.upper())
        else ContactKind.OUTPATIENT_APPOINTMENT
    )
    start = _time(message, "SCH.F11.R1.C4", "appointment start (SCH-11.4)")
    if start is None and _has(message, "AIS"):
        start = _time(message, "AIS.F4", "appointment start (AIS-4)")
    if start is None:
        raise UnmappableReport("the appointment has no start (SCH-11.4 or AIS-4)")
    site = _get(message, "PV1.F3.R1.C4") if _has(message, "PV1") else ""
    return ContactReport(
        source_ref=_get(message, "SCH.F2.R1.C1") or _get(message, "SCH.F1.R1.C1"),
        nhs_number=nhs_number(message),
        contact_kind=kind,
        status=SIU_EVENTS[head.trigger],
        started_at=start,
        source_org=_site_code(site, org_code),
        planned=True,
        chief_complaint=_snomed(message, "SCH", 7),
    )


# ---- reading fields ---------------------------------------------------------------------------


def _has(message: hl7.Message, segment: str) -> bool:
    return segment in _first_segments(message)


def _get(message: hl7.Message, accessor: str) -> str:
    """A field's value, '' when its segment or the field is absent (what `message[accessor]`
    answers, without parsing the accessor and scanning the segments on every call: a message
    is read ~20 times, which was a third of its mapping's CPU, profiled)."""
    acc = _accessor(accessor)
    segment = _first_segments(message).get(acc.segment)
    if segment is None:
        return ""
    try:
        value = segment.extract_field(*acc[1:])
    except (KeyError, IndexError):
        return ""
    return str(value).strip()


@lru_cache(maxsize=256)
def _accessor(key: str) -> hl7.Accessor:
    acc = hl7.Accessor.parse_key(key)
    if acc.segment_num != 1:
        raise ValueError(f"{key}: only the first segment of a kind is read")
    return acc


#: where a parsed message keeps its index of segments (the first of each name) and its header
_INDEX = "_waymark_first_segments"
_HEADER = "_waymark_header"


def _first_segments(message: hl7.Message) -> dict[str, hl7.Segment]:
    """The first segment of each name, indexed once per parsed message (kept on the message:
    a parsed message is read, never changed, by this module)."""
    index: dict[str, hl7.Segment] | None = message.__dict__.get(_INDEX)
    if index is None:
        index = {}
        for segment in message:
            index.setdefault(str(segment[0]), segment)
        message.__dict__[_INDEX] = index
    return index


def _repetitions(message: hl7.Message, segment: str, field: int) -> list[hl7.Repetition]:
    found = []
    for seg in message:
        if str(seg[0]) != segment or len(seg) <= field:
            continue
        value = seg[field]
        if isinstance(value, str):
            continue
        found += [r for r in value if not isinstance(r, str)]
    return found


def _part(rep: hl7.Repetition, component: int, sub: int = 1) -> str:
    """Component (and subcomponent) of a repetition; '' when absent."""
    try:
        value = rep[component - 1]
    except IndexError:
        return ""
    if isinstance(value, str):
        return value.strip() if sub == 1 else ""
    try:
        return str(value[sub - 1]).strip()
    except IndexError:
        return ""


def _coded(rep: hl7.Repetition) -> str | None:
    """The code of a CWE/CE repetition when its coding system is SNOMED CT (primary, CWE-1..3,
    or alternate, CWE-4..6); its text is never read."""
    for code, system in ((1, 3), (4, 6)):
        if _part(rep, system).upper() in _SNOMED_UPPER and _part(rep, code):
            return _part(rep, code)
    return None


def _all_snomed(message: hl7.Message, segment: str, field: int) -> list[str]:
    return [c for rep in _repetitions(message, segment, field) if (c := _coded(rep))]


def _snomed(message: hl7.Message, segment: str, field: int) -> str | None:
    codes = _all_snomed(message, segment, field)
    return codes[0] if codes else None


def _time(message: hl7.Message, accessor: str, what: str) -> datetime | None:
    value = _get(message, accessor)
    if not value:
        return None
    if not DTM.fullmatch(value):
        raise UnmappableReport(f"the {what} {value[:30]!r} is not an HL7 date/time")
    try:
        at = hl7.parse_datetime(value)
    except ValueError:
        raise UnmappableReport(f"the {what} {value[:30]!r} is not a valid date/time") from None
    # the library's own offset class is replaced by UTC (it cannot be copied or pickled)
    return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UK)


def _event_time(message: hl7.Message) -> datetime:
    """When the event happened, for a message that does not say in PV1: EVN-6 (event
    occurred), EVN-2 (recorded), MSH-7 (message time)."""
    for accessor, what in (
        ("EVN.F6", "event occurred (EVN-6)"),
        ("EVN.F2", "recorded date/time (EVN-2)"),
        ("MSH.F7", "message date/time (MSH-7)"),
    ):
        at = _time(message, accessor, what)
        if at is not None:
            return at
    raise UnmappableReport("the message says nowhere when the event happened (PV1-44, EVN, MSH-7)")


def _site(message: hl7.Message, accessor: str, org_code: str) -> str:
    return _site_code(_get(message, accessor), org_code)


def _site_code(site: str, org_code: str) -> str:
    """A site of the source's own organisation (RX101 for RX1) when PV1-3.4 names one;
    otherwise the source's organisation: a source reports its own contacts only."""
    site = site.upper()
    org = org_code.upper()
    if len(site) == len(org) + 2 and site.startswith(org) and site.isalnum():
        return site
    return org
