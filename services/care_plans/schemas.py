"""Request and response bodies of the care plans API.

The plan document follows NHS England's personalised care and support planning: what matters
to the person in their own words, goals, agreed actions, self-management resources, work,
carers and support network (the Triangle of Care), communication needs, a crisis and
contingency section and the next review date.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.care_plans.domain.contacts import crisis_contact_id
from shared.identifiers import ORG_CODE_PATTERN as ORG_CODE
from shared.vocabulary import Instrument

ITEM_ID = r"^[A-Za-z0-9-]{1,36}$"
# a goal's FHIR id is "<plan id hex>.<goal id>", which must fit FHIR's 64 characters
GOAL_ID = r"^[A-Za-z0-9-]{1,31}$"
# printable text without NUL or other control characters (tab and newline allowed)
_CONTROL = set(chr(c) for c in range(32) if chr(c) not in "\t\n\r") | {"\x7f"}


def _clean(v: str) -> str:
    if any(ch in _CONTROL for ch in v):
        raise ValueError("must not contain control characters such as NUL")
    return v


def _sane_date(v: date | None) -> date | None:
    if v is not None and not 1900 <= v.year <= 2200:
        raise ValueError("must be a date between the years 1900 and 2200")
    return v


Text = Annotated[str, Field(max_length=5000), AfterValidator(_clean)]
Short = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_clean)]
SaneDate = Annotated[date, AfterValidator(_sane_date)]


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Section(StrEnum):
    """The parts of a plan a carer may be allowed to see."""

    WHAT_MATTERS = "what_matters_to_me"
    GOALS = "goals"
    ACTIONS = "actions"
    RESOURCES = "resources"
    WORKPLACE = "workplace"
    COMMUNICATION = "communication"
    CRISIS = "crisis"
    REVIEW = "next_review_date"


class Goal(Strict):
    id: str = Field(
        default_factory=_new_id,
        pattern=GOAL_ID,
        description="stable across versions; assigned if not given",
    )
    what: Text = Field(min_length=1)
    by_when: SaneDate | None = None
    owner: Literal["person", "carer", "service"] = "person"
    owner_name: Short | None = None
    status: Literal["proposed", "active", "achieved", "on_hold", "cancelled"] = "active"


class AgreedAction(Strict):
    id: str = Field(default_factory=_new_id, pattern=ITEM_ID)
    what: Text = Field(min_length=1)
    who: Literal["person", "carer", "service"]
    service_name: Short | None = None
    directory_service_id: str | None = Field(default=None, max_length=64, pattern=ITEM_ID)
    due: SaneDate | None = None
    status: Literal["agreed", "in_progress", "done", "cancelled"] = "agreed"


class Resource(Strict):
    """A self-management resource: a service in the directory."""

    directory_service_id: str = Field(max_length=64, pattern=ITEM_ID)
    title: Short
    note: Text | None = None


class Workplace(Strict):
    job_status: (
        Literal[
            "employed",
            "self_employed",
            "unemployed",
            "off_sick",
            "student",
            "retired",
            "carer",
            "other",
        ]
        | None
    ) = None
    adjustments_agreed: list[Short] = Field(default_factory=list, max_length=20)
    fit_note_status: Literal["none", "may_be_fit", "not_fit"] | None = None
    return_to_work_goal: Text | None = None


class Carer(Strict):
    """Triangle of Care: the carer's contact, and what the person lets them see."""

    id: str = Field(default_factory=_new_id, pattern=ITEM_ID)
    name: Short
    relationship: Short
    contact: Short
    may_see: list[Section] = Field(
        default_factory=list,
        max_length=len(Section),
        description="the sections the person lets this carer see; empty: no access",
    )


# the practical subset of RFC 5322 addresses; UK mobile numbers (07 and nine digits, Ofcom)
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_UK_MOBILE = re.compile(r"^(?:\+447|00447|07)\d{9}$")


def _email(v: str) -> str:
    v = v.strip()
    if len(v) > 254 or ".." in v or not _EMAIL.match(v):
        raise ValueError("must be an email address such as name@example.org")
    return v


def _uk_mobile(v: str) -> str:
    digits = re.sub(r"[\s\-()]", "", v)
    if not _UK_MOBILE.match(digits):
        raise ValueError("must be a UK mobile number such as 07700 900123 or +44 7700 900123")
    return v.strip()


Email = Annotated[str, Field(max_length=254), AfterValidator(_email)]
UkMobile = Annotated[str, Field(max_length=20), AfterValidator(_uk_mobile)]


class Communication(Strict):
    easy_read: bool = False
    large_print: bool = False
    bsl: bool = False
    interpreter: bool = False
    language: Short | None = None
    learning_disability: bool = False
    dementia: bool = False
    preferred_channel: Literal["letter", "email", "sms", "phone", "video", "in_person"] | None = (
        None
    )
    preferred_time: Short | None = None
    # how messages reach the person (optional: many plans record only the preferred channel)
    email: Email | None = None
    mobile: UkMobile | None = None


# UK numbers (Ofcom's numbering plan: 0 and nine or ten digits, +44 for the 0) and the
# national short codes a crisis plan names: 999 and 112 (emergency), 111 (NHS 111, option 2
# for mental health), 116 xxx (harmonised European helplines: 116 123 Samaritans)
_UK_PHONE = re.compile(r"^(?:(?:\+44|0044|0)\d{9,10}|999|112|111|116\d{3})$")
_PHONE_PUNCTUATION = re.compile(r"[\s\-()]")
#: validation context of a version read back from the database: what was valid when it was
#: stored stays readable (an old free-text number must never turn a read into a 500)
STORED = "stored"


def _uk_phone(v: str, info: ValidationInfo) -> str:
    if info.context and info.context.get(STORED):
        return v
    if not _UK_PHONE.match(_PHONE_PUNCTUATION.sub("", v)):
        raise ValueError(
            "must be a UK phone number such as 0113 496 0999 or +44 7700 900123, "
            "or a national line such as 111 or 116 123"
        )
    return v.strip()


UkPhone = Annotated[
    str, Field(min_length=1, max_length=30), AfterValidator(_clean), AfterValidator(_uk_phone)
]


class CrisisContact(Strict):
    """Someone to call in a crisis: a person (relationship) or a service (role)."""

    id: str = Field(
        pattern=ITEM_ID,
        description="stable across versions; if not given, made from the name and number",
    )
    name: Short
    relationship: Short | None = Field(default=None, description="e.g. sister, friend")
    role: Short | None = Field(default=None, description="e.g. crisis team, 24 hours")
    phone: UkPhone

    @model_validator(mode="before")
    @classmethod
    def _id_from_contact(cls, data: Any) -> Any:
        # a random id on each save would make every unchanged contact look changed
        if isinstance(data, dict) and not data.get("id"):
            return {**data, "id": crisis_contact_id(data.get("name"), data.get("phone"))}
        return data


class Crisis(Strict):
    """The person's crisis plan: when it applies, what to do, who to call. Shown to the
    coordinator on a PHQ-9 item 9 safety alert; never carried in events."""

    who_to_call: list[CrisisContact] = Field(default_factory=list, max_length=10)
    when: Text | None = Field(default=None, description="the signs that a crisis is coming")
    plan: Text | None = Field(default=None, description="what to do, in the person's words")

    @field_validator("who_to_call")
    @classmethod
    def _unique_ids(cls, v: list[CrisisContact]) -> list[CrisisContact]:
        ids = [c.id for c in v]
        if len(ids) != len(set(ids)):
            raise ValueError("crisis contact ids must be unique")
        return v


class PlanContent(Strict):
    """The plan document. Every change stores a whole new immutable version of it."""

    what_matters_to_me: Text = ""
    goals: list[Goal] = Field(default_factory=list, max_length=50)
    actions: list[AgreedAction] = Field(default_factory=list, max_length=100)
    resources: list[Resource] = Field(default_factory=list, max_length=50)
    workplace: Workplace = Field(default_factory=Workplace)
    carers: list[Carer] = Field(default_factory=list, max_length=20)
    communication: Communication = Field(default_factory=Communication)
    crisis: Crisis = Field(default_factory=Crisis)
    next_review_date: SaneDate | None = None

    @field_validator("goals", "actions", "carers")
    @classmethod
    def _unique_ids(cls, v: list[Any]) -> list[Any]:
        ids = [x.id for x in v]
        if len(ids) != len(set(ids)):
            raise ValueError("ids must be unique")
        return v


def stored_content(content: dict[str, Any]) -> PlanContent:
    """A version's document as stored: validated as it was when written (see STORED)."""
    return PlanContent.model_validate(content, context={STORED: True})


OrgCode = Annotated[str, Field(pattern=ORG_CODE)]


class PlanCreate(Strict):
    nhs_number: str = Field(min_length=10, max_length=12, examples=["9434765919"])
    content: PlanContent = Field(default_factory=PlanContent)
    consented_organisations: list[OrgCode] = Field(
        default_factory=list,
        max_length=100,
        description="organisations the person lets read the plan (besides the holder)",
    )
    reason: Short = "plan agreed"

    _nhs = field_validator("nhs_number")(_clean)


class PlanUpdate(Strict):
    content: PlanContent
    reason: Short


class BreakGlassIn(Strict):
    nhs_number: str = Field(min_length=10, max_length=12, examples=["9434765919"])
    reason_code: Literal["emergency-care", "patient-unable-to-consent", "safeguarding"]
    reason: Text = Field(
        min_length=5,
        description="why, in your words: kept in the audit log for the "
        "information governance review, never in events",
    )

    _nhs = field_validator("nhs_number")(_clean)


class BreakGlassOut(BaseModel):
    grant_id: str
    plan_id: str
    expires_at: datetime
    notice: str


class ConsentUpdate(Strict):
    organisations: list[OrgCode] = Field(max_length=100)
    reason: Short


class VersionInfo(BaseModel):
    version: int
    author: str
    author_org: str
    reason: str
    created_at: datetime


class PlanOut(BaseModel):
    id: str
    patient_id: str
    ics: str
    holder_org: str
    version: int
    content: PlanContent
    consented_organisations: list[str]
    author: str
    author_org: str
    reason: str
    updated_at: datetime
    created_at: datetime
    access: str = Field(description="why you may read it: holder, consent, ics_coordinator")


class PlanSummary(BaseModel):
    """ "Tell it once": what a receiving service needs to know without asking again."""

    id: str
    patient_id: str
    version: int
    what_matters_to_me: str
    active_goals: list[Goal]
    communication: Communication
    crisis: Crisis
    carers: list[dict[str, Any]]
    latest_assessments: list[AssessmentOut]
    next_review_date: date | None


class Change(BaseModel):
    op: Literal["added", "removed", "changed"]
    path: str
    before: Any = None
    after: Any = None


class DiffOut(BaseModel):
    from_version: int
    to_version: int
    changes: list[Change]


class AssessmentIn(Strict):
    instrument: str = Field(max_length=40, description="STarT-Back, PHQ-9 or GAD-7")
    answers: dict[Annotated[str, Field(max_length=4)], int | str] = Field(
        max_length=20,
        description='item number -> answer code, e.g. {"1": 0, ..., "9": 2} (PHQ-9/GAD-7: '
        "0-3; STarT Back items 1-8: agree/disagree, item 9: not_at_all, slightly, "
        "moderately, very_much, extremely)",
    )
    authored: AwareDatetime | None = Field(
        default=None, description="when the person answered, with its offset (default: now)"
    )

    @field_validator("authored")
    @classmethod
    def _sane(cls, v: datetime | None) -> datetime | None:
        if v is not None and not 1900 <= v.year <= 9000:
            raise ValueError("authored must be after the year 1900")
        return v


class RiskFlagOut(BaseModel):
    reason: str
    severity: str


class AssessmentOut(BaseModel):
    id: str
    instrument: Instrument
    total: int
    band: str
    subscale: int | None
    safety_flag: bool
    risk_flags: list[RiskFlagOut]
    authored: datetime
    recorded_by: str
    recorded_org: str


class TrendPointOut(BaseModel):
    assessment_id: str
    authored: datetime
    total: int
    band: str
    change: int | None
    reliable_change: str | None


class AssessmentHistory(BaseModel):
    instrument: Instrument
    direction: str
    reliable_change_threshold: int | None
    points: list[TrendPointOut]


class TimelineEntryOut(BaseModel):
    referral_id: str
    event_type: str
    state: str
    previous_state: str | None
    from_org: str
    to_org: str
    to_service_id: str
    service_category: str
    transition_reason: str | None
    occurred_at: datetime


class CarerContactOut(BaseModel):
    id: str
    name: str
    relationship: str
    contact: str
    may_see: list[str]


class CrisisContactOut(BaseModel):
    id: str
    name: str
    relationship: str | None
    role: str | None
    phone: str


class CrisisPlanOut(BaseModel):
    """The person's crisis plan and who to call, from the plan's current version."""

    plan_id: str
    patient_id: str
    version: int
    updated_at: datetime
    when: str | None
    plan: str | None
    contacts: list[CrisisContactOut]
    access: str = Field(description="why you may read it: holder, consent, ics_coordination")


class ContactOut(BaseModel):
    """How to reach the person and their carers, for the notifications service's credential
    only: read at send time, never carried in events."""

    patient_id: str
    plan_id: str
    version: int
    communication: Communication
    carers: list[CarerContactOut]


PlanSummary.model_rebuild()
