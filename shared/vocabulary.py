"""One vocabulary for every part, each term defined once with its words: the categories of
service, the referral states, how a referral ended and why, and the screening instruments with
the bands their scoring produces and which bands their authors treat as high risk. Pure: no
I/O. Events carry these exact values; labels on pages, in messages and in alert explanations
come from here.

The care plans service scores and flags with it (services/care_plans/domain/screening.py);
the journey rules alert with it (workflows/journeys/rules.py). Events carry these exact
values. Before it existed, care plans said `high` for STarT Back's high-risk band and the
journey rules looked for `high_risk`, so no STarT Back high result ever reached a coordinator
(issue #15).

Sources:
- Keele STarT Back Screening Tool: Hill JC et al. 2008, Arthritis Rheum 59(5):632-641, and the
  Keele scoring guide: low, medium, high risk; high is the subgroup for psychologically
  informed physiotherapy.
- PHQ-9: Kroenke, Spitzer & Williams 2001, J Gen Intern Med 16(9):606-613: minimal, mild,
  moderate, moderately severe, severe (20-27).
- GAD-7: Spitzer, Kroenke, Williams & Lowe 2006, Arch Intern Med 166(10):1092-1097: minimal,
  mild, moderate, severe (15-21).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Instrument(StrEnum):
    # the values are the events' `instrument` and the Questionnaire ids care plans publishes
    START_BACK = "STarT-Back"
    PHQ9 = "PHQ-9"
    GAD7 = "GAD-7"


class Band(StrEnum):
    """Every band any instrument's scoring produces (events carry these; BANDS says which
    belong to which instrument)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    MINIMAL = "minimal"
    MILD = "mild"
    MODERATE = "moderate"
    MODERATELY_SEVERE = "moderately_severe"
    SEVERE = "severe"


#: every band an instrument's scoring produces, lowest first (snake_case, as events carry them)
BANDS: Mapping[Instrument, tuple[str, ...]] = {
    Instrument.START_BACK: ("low", "medium", "high"),
    Instrument.PHQ9: ("minimal", "mild", "moderate", "moderately_severe", "severe"),
    Instrument.GAD7: ("minimal", "mild", "moderate", "severe"),
}

#: the bands each instrument's authors treat as high risk
HIGH_RISK_BANDS: Mapping[Instrument, frozenset[str]] = {
    Instrument.START_BACK: frozenset({"high"}),
    Instrument.PHQ9: frozenset({"severe"}),
    Instrument.GAD7: frozenset({"severe"}),
}

#: how a band reads in a sentence ("in the high risk band")
BAND_WORDS: Mapping[Instrument, Mapping[str, str]] = {
    Instrument.START_BACK: {"low": "low risk", "medium": "medium risk", "high": "high risk"},
    Instrument.PHQ9: {b: b.replace("_", " ") for b in BANDS[Instrument.PHQ9]},
    Instrument.GAD7: {b: b.replace("_", " ") for b in BANDS[Instrument.GAD7]},
}


def instrument_of(value: str) -> Instrument | None:
    """The instrument an event names (None for one this vocabulary does not know)."""
    try:
        return Instrument(value)
    except ValueError:
        return None


def is_high_risk(instrument: str, band: str) -> bool:
    inst = instrument_of(instrument)
    return inst is not None and band in HIGH_RISK_BANDS[inst]


def band_words(instrument: str, band: str) -> str:
    inst = instrument_of(instrument)
    if inst is None:
        return band.replace("_", " ")
    return BAND_WORDS[inst].get(band, band.replace("_", " "))


#: the severity each screening flag carries, in the care plan (RiskFlagged) and on the journey's
#: alert alike: item 9 of PHQ-9 above 0 is urgent (contact the person today); a high-risk band is
#: a pathway prompt at high (act within a working day)
RISK_SEVERITY: Mapping[str, str] = {"phq9_item9": "urgent", "high_risk_band": "high"}


# --- how a referral ended ------------------------------------------------------------------
#
# The referrals service takes a coded reason for every ending (services/referrals/domain.py;
# rejection and return reasons follow NHS e-RS "reject / return to referrer"). What the ending
# means for the person's journey decides the loop and stall rules (workflows/journeys/rules.py):
# treatment completed, or advice and guidance followed by a referral, is the pathway working;
# a door closed without treatment is what bouncing is made of.


class Outcome(StrEnum):
    TREATED = "treated"  # care given: treatment completed, goals met, onward referral...
    ADVICE = "advice"  # returned with advice and guidance for the referrer to act on
    NOT_TREATED = "not_treated"  # a door closed: not accepted, returned, discharged after DNAs
    DECLINED = "declined"  # the person's own choice
    ADMINISTRATIVE = "administrative"  # a duplicate, an error, moved away: not about care


#: every (ending state, reason code) the referrals service allows, and what it means
CLOSURE_OUTCOMES: Mapping[str, Mapping[str, Outcome]] = {
    "rejected": {
        "not-appropriate-for-service": Outcome.NOT_TREATED,
        "does-not-meet-criteria": Outcome.NOT_TREATED,
        "service-unavailable": Outcome.NOT_TREATED,
        "insufficient-information": Outcome.NOT_TREATED,
        "duplicate-referral": Outcome.ADMINISTRATIVE,
        "patient-declined": Outcome.DECLINED,
    },
    "returned": {
        "advice-and-guidance-given": Outcome.ADVICE,
        "manage-in-primary-care": Outcome.ADVICE,
        "refer-elsewhere": Outcome.NOT_TREATED,
        "insufficient-information": Outcome.NOT_TREATED,
    },
    "discharged": {
        "treatment-completed": Outcome.TREATED,
        "goals-met": Outcome.TREATED,
        "self-management": Outcome.TREATED,
        "onward-referral": Outcome.TREATED,
        "patient-declined-further-care": Outcome.DECLINED,
        "did-not-attend-discharged": Outcome.NOT_TREATED,
        "moved-away": Outcome.ADMINISTRATIVE,
        "deceased": Outcome.ADMINISTRATIVE,
    },
    "cancelled": {
        "patient-request": Outcome.DECLINED,
        "referred-in-error": Outcome.ADMINISTRATIVE,
        "no-longer-required": Outcome.ADMINISTRATIVE,
        "duplicate-referral": Outcome.ADMINISTRATIVE,
        # the referrer cancelled because the directory withdrew the service: the person still
        # needs somewhere to go
        "service-withdrawn": Outcome.NOT_TREATED,
    },
}

#: how an ending state with no (or an unknown) reason is read: a service's rejection or return
#: is a closed door; a discharge is care given; a cancellation is administrative
DEFAULT_OUTCOME: Mapping[str, Outcome] = {
    "rejected": Outcome.NOT_TREATED,
    "returned": Outcome.NOT_TREATED,
    "discharged": Outcome.TREATED,
    "cancelled": Outcome.ADMINISTRATIVE,
}

#: how a reason reads in an explanation ("not accepted: does not meet the criteria")
REASON_WORDS: Mapping[str, str] = {
    "not-appropriate-for-service": "not appropriate for the service",
    "does-not-meet-criteria": "does not meet the criteria",
    "service-unavailable": "service unavailable",
    "insufficient-information": "not enough information",
    "duplicate-referral": "a duplicate referral",
    "patient-declined": "the person declined",
    "advice-and-guidance-given": "advice and guidance given",
    "manage-in-primary-care": "to be managed in primary care",
    "refer-elsewhere": "to be referred elsewhere",
    "treatment-completed": "treatment completed",
    "goals-met": "goals met",
    "self-management": "supported self-management",
    "onward-referral": "referred onwards",
    "patient-declined-further-care": "the person declined further care",
    "did-not-attend-discharged": "discharged after missed appointments",
    "moved-away": "moved away",
    "deceased": "deceased",
    "patient-request": "at the person's request",
    "referred-in-error": "referred in error",
    "no-longer-required": "no longer required",
    "service-withdrawn": "the service was withdrawn",
}


def closure_outcome(state: str, reason: str | None) -> Outcome | None:
    """What an ending means (None: `state` is not an ending)."""
    if state not in DEFAULT_OUTCOME:
        return None
    return CLOSURE_OUTCOMES[state].get(reason or "", DEFAULT_OUTCOME[state])


def reason_words(reason: str | None) -> str:
    return REASON_WORDS.get(reason or "", (reason or "no reason given").replace("-", " "))


# --- referral states ---------------------------------------------------------------------------
#
# The referrals service's state machine (services/referrals/domain.py) moves a referral between
# these; events carry them as `state` and `previous_state`.


class ReferralState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RETURNED = "returned"
    BOOKED = "booked"
    ATTENDED = "attended"
    DID_NOT_ATTEND = "did_not_attend"
    DISCHARGED = "discharged"
    CANCELLED = "cancelled"
    ON_HOLD = "on_hold"


#: states a referral cannot leave: how it ended (DEFAULT_OUTCOME reads each)
ENDED_STATES: frozenset[ReferralState] = frozenset(
    {
        ReferralState.REJECTED,
        ReferralState.RETURNED,
        ReferralState.DISCHARGED,
        ReferralState.CANCELLED,
    }
)
#: states of a referral still in progress
OPEN_STATES: frozenset[ReferralState] = frozenset(set(ReferralState) - ENDED_STATES)

#: what each state means for the person, in words (the dashboard's timeline and tables)
STATE_LABELS: Mapping[ReferralState, str] = {
    ReferralState.DRAFT: "Draft (not sent)",
    ReferralState.SUBMITTED: "Waiting for triage",
    ReferralState.ACCEPTED: "Accepted, waiting to be booked",
    ReferralState.BOOKED: "Booked",
    ReferralState.ATTENDED: "Attended",
    ReferralState.DID_NOT_ATTEND: "Did not attend",
    ReferralState.ON_HOLD: "On hold",
    ReferralState.REJECTED: "Not accepted",
    ReferralState.RETURNED: "Returned to the referrer",
    ReferralState.DISCHARGED: "Discharged",
    ReferralState.CANCELLED: "Cancelled",
}


# --- categories of service ---------------------------------------------------------------------
#
# What kind of service a directory entry is (issue #4). These codes are the directory's public
# contract: API filters, the events' `category` / `service_category`, and the Waymark taxonomy
# terms in the ORUK feed. Add codes; never rename one (consumers store them). Events keep the
# field an open string, so a partner validating against a v1 schema is not broken by a new code.


class Category(StrEnum):
    """What kind of service this is (issue #4)."""

    PAIN_MANAGEMENT_PROGRAMME = "pain_management_programme"
    TALKING_THERAPIES_LTC = "talking_therapies_ltc"  # talking therapies for long-term conditions
    MSK_PHYSIOTHERAPY = "msk_physiotherapy"
    SOCIAL_PRESCRIBING = "social_prescribing"
    PEER_SUPPORT = "peer_support"
    SELF_MANAGEMENT_COURSE = "self_management_course"
    EXERCISE_YOGA = "exercise_yoga"
    VOCATIONAL_REHABILITATION = "vocational_rehabilitation"  # vocational rehabilitation and work
    CARERS_SUPPORT = "carers_support"
    CRISIS = "crisis"


@dataclass(frozen=True)
class CategoryWords:
    label: str  # a title: "Pain management programme"
    in_sentence: str  # "referred to the pain management programme"
    plural: str  # "2 pain management programmes"


C = Category
CATEGORY_WORDS: Mapping[Category, CategoryWords] = {
    C.PAIN_MANAGEMENT_PROGRAMME: CategoryWords(
        "Pain management programme",
        "the pain management programme",
        "pain management programmes",
    ),
    C.TALKING_THERAPIES_LTC: CategoryWords(
        "Talking therapies (long-term conditions)", "talking therapies", "talking therapies"
    ),
    C.MSK_PHYSIOTHERAPY: CategoryWords(
        "MSK physiotherapy", "MSK physiotherapy", "MSK physiotherapy services"
    ),
    C.SOCIAL_PRESCRIBING: CategoryWords(
        "Social prescribing", "social prescribing", "social prescribing services"
    ),
    C.PEER_SUPPORT: CategoryWords("Peer support", "peer support", "peer support groups"),
    C.SELF_MANAGEMENT_COURSE: CategoryWords(
        "Self-management course", "a self-management course", "self-management courses"
    ),
    C.EXERCISE_YOGA: CategoryWords(
        "Exercise and yoga", "exercise and yoga", "exercise and yoga classes"
    ),
    C.VOCATIONAL_REHABILITATION: CategoryWords(
        "Vocational rehabilitation",
        "vocational rehabilitation",
        "vocational rehabilitation services",
    ),
    C.CARERS_SUPPORT: CategoryWords("Carers' support", "carers' support", "carers' services"),
    C.CRISIS: CategoryWords("Crisis service", "the crisis service", "crisis services"),
}
del C


def category_of(code: str) -> Category | None:
    """The category a code names (None for one this vocabulary does not know)."""
    try:
        return Category(code)
    except ValueError:
        return None


def category_words(code: str) -> CategoryWords:
    """The words for a category; a code this vocabulary does not know reads as itself."""
    known = category_of(code)
    if known is not None:
        return CATEGORY_WORDS[known]
    plain = code.replace("_", " ")
    return CategoryWords(plain[:1].upper() + plain[1:], plain, plain)


# --- contacts with care outside referrals (issue #17) ------------------------------------------
#
# What the EHRs an ICS runs tell Waymark: a person's contacts with urgent and primary care, sent
# by the integration service as `uk.waymark.encounter.recorded` events (codes, never free text).
# The journey rules count unplanned contacts (frequent attender, unplanned care while waiting,
# repeated A&E for pain); planned contacts are shown, not counted.


class ContactKind(StrEnum):
    """Where the contact happened. Add kinds; never rename one (consumers store them)."""

    AE_ATTENDANCE = "ae_attendance"  # emergency department / urgent treatment centre (ECDS)
    NHS_111 = "nhs_111"  # NHS 111 call or online assessment
    OUT_OF_HOURS = "out_of_hours"  # GP out-of-hours service
    CRISIS_TEAM = "crisis_team"  # mental health crisis team / crisis line contact
    GP_APPOINTMENT = "gp_appointment"  # general practice appointment (planned or same-day)
    ADMISSION = "admission"  # inpatient admission (HL7 v2 A01)
    OUTPATIENT_APPOINTMENT = "outpatient_appointment"  # hospital outpatient (SIU)


class ContactStatus(StrEnum):
    """Where the contact stands, after FHIR R4 Encounter.status and Appointment.status. A contact
    happened when it is arrived, in progress or finished; the others never count."""

    BOOKED = "booked"  # an appointment not yet due
    ARRIVED = "arrived"
    IN_PROGRESS = "in_progress"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    DID_NOT_ATTEND = "did_not_attend"
    ENTERED_IN_ERROR = "entered_in_error"  # e.g. HL7 v2 A11 (cancel admit / visit)


#: statuses of a contact that took place
HAPPENED_STATUSES: frozenset[ContactStatus] = frozenset(
    {ContactStatus.ARRIVED, ContactStatus.IN_PROGRESS, ContactStatus.FINISHED}
)
#: kinds that are unplanned whatever the source says (a GP appointment or an admission is
#: unplanned only when the source says so: same-day / urgent, emergency admission)
ALWAYS_UNPLANNED: frozenset[ContactKind] = frozenset(
    {
        ContactKind.AE_ATTENDANCE,
        ContactKind.NHS_111,
        ContactKind.OUT_OF_HOURS,
        ContactKind.CRISIS_TEAM,
    }
)

CONTACT_LABELS: Mapping[ContactKind, str] = {
    ContactKind.AE_ATTENDANCE: "A&E attendance",
    ContactKind.NHS_111: "NHS 111 contact",
    ContactKind.OUT_OF_HOURS: "GP out-of-hours contact",
    ContactKind.CRISIS_TEAM: "Crisis team contact",
    ContactKind.GP_APPOINTMENT: "GP appointment",
    ContactKind.ADMISSION: "Hospital admission",
    ContactKind.OUTPATIENT_APPOINTMENT: "Outpatient appointment",
}
