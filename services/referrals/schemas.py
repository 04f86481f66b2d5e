"""Request and response bodies of the referrals API."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from services.referrals.domain import Priority, Source
from shared.identifiers import ORG_CODE_PATTERN as ORG_CODE
from shared.vocabulary import Category, ReferralState

SNOMED_CODE = r"^[1-9][0-9]{5,17}$"  # an SCTID: 6-18 digits, no leading zero
# printable text without NUL or other control characters (tab and newline allowed)
_CONTROL = set(chr(c) for c in range(32) if chr(c) not in "\t\n\r") | {"\x7f"}


def _no_control_chars(v: str | None) -> str | None:
    if v is not None and any(ch in _CONTROL for ch in v):
        raise ValueError("must not contain control characters such as NUL")
    return v


class PatientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nhs_number: str = Field(min_length=10, max_length=12, examples=["9434765919"])
    given_name: str = Field(min_length=1, max_length=100)
    family_name: str = Field(min_length=1, max_length=100)
    birth_date: date
    registered_practice: str | None = Field(
        default=None,
        pattern=ORG_CODE,
        examples=["A81001"],
        description="the ODS code of the GP practice the person is registered with (e-RS and "
        "PDS carry it); that practice then has a care relationship with them",
    )

    _clean = field_validator("nhs_number", "given_name", "family_name")(_no_control_chars)

    @field_validator("birth_date")
    @classmethod
    def _past(cls, v: date) -> date:
        if v > date.today() or v.year < 1900:
            raise ValueError("birth_date must be a past date after 1900")
        return v


class ReferralCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient: PatientIn
    source: Source
    from_practitioner: str = Field(min_length=1, max_length=100)
    to_service_id: str = Field(
        min_length=1, max_length=64, description="the directory service referred to"
    )
    to_org: str | None = Field(
        default=None,
        pattern=ORG_CODE,
        description="optional: if given, must be the organisation that runs to_service_id",
    )
    reason_codes: list[str] = Field(min_length=1, max_length=20)
    clinical_summary: str = Field(min_length=1, max_length=10000)
    priority: Priority = Priority.ROUTINE
    consent_to_referral: bool
    consent_to_carer_sharing: bool = False
    communication_needs: list[str] = Field(default_factory=list, max_length=20)
    referred_from: str | None = Field(default=None, max_length=64)
    as_draft: bool = Field(default=False, description="save as a draft, to submit later")

    _clean = field_validator(
        "from_practitioner", "to_service_id", "clinical_summary", "referred_from"
    )(_no_control_chars)

    @field_validator("reason_codes")
    @classmethod
    def _snomed(cls, codes: list[str]) -> list[str]:
        for c in codes:
            if not re.fullmatch(SNOMED_CODE, c):
                raise ValueError(f"{c[:30]!r} is not a SNOMED CT concept id (6-18 digits)")
        return codes

    @field_validator("communication_needs")
    @classmethod
    def _needs(cls, needs: list[str]) -> list[str]:
        for n in needs:
            if not 1 <= len(n) <= 200:
                raise ValueError("each communication need is 1-200 characters")
            _no_control_chars(n)
        return needs


class PatientRef(BaseModel):
    """The person as a standard ServiceRequest names them: by NHS number; name and birth date
    only if the sender gave them (Waymark never guesses them)."""

    model_config = ConfigDict(extra="forbid")

    nhs_number: str = Field(min_length=10, max_length=12)
    given_name: str | None = Field(default=None, min_length=1, max_length=100)
    family_name: str | None = Field(default=None, min_length=1, max_length=100)
    birth_date: date | None = None
    registered_practice: str | None = Field(default=None, pattern=ORG_CODE)

    _clean = field_validator("nhs_number", "given_name", "family_name")(_no_control_chars)

    @field_validator("birth_date")
    @classmethod
    def _past(cls, v: date | None) -> date | None:
        return None if v is None else PatientIn._past(v)


class ReferralFromEhr(ReferralCreate):
    """A referral as another system sends it (services/referrals/fhir.py): the person may be
    named by NHS number alone, and consent may be implied (a referral for direct care)."""

    patient: PatientRef  # type: ignore[assignment]
    consent_basis: Literal["explicit", "implied"] = "explicit"
    service_category: Category | None = Field(
        default=None, description="if the sender coded one, the service's category must be it"
    )


class ReferralOut(BaseModel):
    id: str
    patient_id: str
    nhs_number: str
    given_name: str | None
    family_name: str | None
    birth_date: str | None
    from_org: str
    from_practitioner: str | None
    source: str
    to_org: str
    to_service_id: str | None
    service_category: str
    reason_codes: list[str]
    clinical_summary: str | None
    priority: str
    consent_to_referral: bool
    consent_to_carer_sharing: bool
    consent_basis: str = "explicit"
    communication_needs: list[str]
    referred_from: str | None
    state: str
    held_from: str | None
    appointment_at: datetime | None
    submitted_at: datetime | None
    flags: list[str]
    source_system: str | None = None
    source_ref: str | None = None
    version: int
    created_at: datetime
    updated_at: datetime
    allowed_actions: list[str] = Field(default_factory=list)


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason_code: str | None = Field(default=None, max_length=60, pattern=r"^[a-z0-9-]+$")
    note: str | None = Field(
        default=None,
        max_length=2000,
        description="advice to the referrer, or a note; stays in Waymark",
    )
    appointment_at: AwareDatetime | None = None

    _clean = field_validator("note")(_no_control_chars)

    @field_validator("appointment_at")
    @classmethod
    def _sane_year(cls, v: datetime | None) -> datetime | None:
        if v is not None and not 2000 <= v.year <= 2100:
            raise ValueError("appointment_at must be between the years 2000 and 2100")
        return v


class TransitionOut(BaseModel):
    from_state: str | None
    to_state: str
    actor: str
    actor_org: str
    reason_code: str | None
    note: str | None
    at: datetime


class WorklistItem(BaseModel):
    id: str
    patient_id: str
    nhs_number: str
    given_name: str | None
    family_name: str | None
    from_org: str
    to_service_id: str | None
    service_category: str
    priority: str
    state: str
    reason_codes: list[str]
    flags: list[str]
    submitted_at: datetime | None
    waiting_days: int


class Page(BaseModel):
    items: list[WorklistItem]
    total: int
    limit: int
    offset: int


class MessageContextOut(BaseModel):
    """What a message about a referral needs, for the notifications service's credential only:
    personal details fetched at send time, never carried in events."""

    referral_id: str
    patient_id: str
    given_name: str | None = Field(description="None: not held (an imported referral)")
    referrer_user: str = Field(description="the user who made the referral")
    referrer_org: str
    from_practitioner: str | None
    to_org: str
    to_service_id: str | None
    service_category: str
    priority: str
    state: str
    appointment_at: datetime | None
    note: str | None = Field(
        description="the free-text advice or note of the transition "
        "(the one that published event_id, else the latest)"
    )
    reason_code: str | None
    communication_needs: list[str]
    consent_to_carer_sharing: bool


# --- the historical import (the integration service's bulk history at go-live) -------------

SOURCE_SYSTEM = r"^[a-z0-9][a-z0-9-]{0,62}$"


class HistoryStepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: ReferralState = Field(description="the state the referral reached at this step")
    at: AwareDatetime = Field(description="when, with its offset (the past)")
    reason: str | None = Field(
        default=None,
        max_length=60,
        pattern=r"^[a-z0-9-]+$",
        description="the coded reason the state machine asks for (reject, return, discharge, "
        "cancel, hold)",
    )
    appointment_at: AwareDatetime | None = Field(
        default=None, description="a booked step's appointment"
    )


class HistoryImportIn(BaseModel):
    """A referral an EHR already holds, with every step it took (the contract the integration
    service's importer is written against: docs/integration/referrals.md)."""

    model_config = ConfigDict(extra="forbid")

    source_system: str = Field(pattern=SOURCE_SYSTEM, examples=["ers-worklist"])
    source_ref: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
        description="the source's own referral id (e.g. an e-RS UBRN)",
        examples=["000000123456"],
    )
    nhs_number: str = Field(min_length=10, max_length=12, examples=["9434765919"])
    from_org: str = Field(pattern=ORG_CODE)
    to_org: str = Field(pattern=ORG_CODE)
    to_service_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the Waymark directory service, when the source's service maps to one; "
        "null when it does not (to_org and service_category still say where it went)",
    )
    service_category: Category
    priority: Priority
    reason_codes: list[str] = Field(default_factory=list, max_length=20)
    registered_practice: str | None = Field(default=None, pattern=ORG_CODE)
    source: Source | None = Field(
        default=None,
        description="optional: who referred (gp, self, ...); if absent, `gp` when from_org is "
        "the registered practice, else `unknown`",
    )
    history: list[HistoryStepIn] = Field(min_length=1, max_length=1000)

    _clean = field_validator("nhs_number", "to_service_id")(_no_control_chars)

    @field_validator("reason_codes")
    @classmethod
    def _snomed(cls, codes: list[str]) -> list[str]:
        for c in codes:
            if not re.fullmatch(SNOMED_CODE, c):
                raise ValueError(f"{c[:30]!r} is not a SNOMED CT concept id (6-18 digits)")
        return codes


class HistoryImportOut(BaseModel):
    referral_id: str
    created: bool = Field(description="true: this request created the referral")
    events: int = Field(description="events this request published (one per new step)")
    steps_applied: int
    stored_steps: int = Field(description="the source's steps Waymark now holds")
    state: str


class HistoryStatusOut(BaseModel):
    referral_id: str
    source_system: str
    source_ref: str
    stored_steps: int
    state: str
    last_step_at: datetime | None
