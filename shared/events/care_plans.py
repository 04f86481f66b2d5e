"""Events published by the care plans service on `waymark.care-plans.v1`.

The subject is the patient's pseudonymous id (the same HMAC pseudonym of the NHS number the
referrals service uses). Assessment events carry the instrument, total, band and subscale —
never the answers; the plan's content never leaves the service.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from shared.events.envelope import EventData
from shared.events.registry import REGISTRY
from shared.identifiers import ORG_CODE_PATTERN as ORG_CODE
from shared.vocabulary import Band, Instrument


class CarePlanEventData(EventData):
    SOURCE = "waymark/care-plans"

    plan_id: str = Field(max_length=64)


@REGISTRY.register
class CarePlanCreated(CarePlanEventData):
    EVENT_TYPE = "uk.waymark.care-plan.created"
    VERSION = 1
    version: int = Field(ge=1)


@REGISTRY.register
class CarePlanUpdated(CarePlanEventData):
    EVENT_TYPE = "uk.waymark.care-plan.updated"
    VERSION = 1
    version: int = Field(ge=1)


@REGISTRY.register
class ConsentChanged(CarePlanEventData):
    EVENT_TYPE = "uk.waymark.care-plan.consent.changed"
    VERSION = 1
    # organisations that may now read the plan; carers are counted, never named
    organisations: list[str] = Field(default_factory=list, max_length=100)
    carers_with_access: int = Field(ge=0, le=50)


@REGISTRY.register
class AssessmentRecorded(CarePlanEventData):
    EVENT_TYPE = "uk.waymark.care-plan.assessment.recorded"
    VERSION = 1
    assessment_id: str = Field(max_length=64)
    instrument: Instrument
    total: int = Field(ge=0, le=27)
    band: Band
    subscale: int | None = Field(default=None, ge=0, le=5)  # STarT Back distress subscale
    safety_flag: bool = False  # PHQ-9 item 9 above 0
    # who must hear of a safety flag at once (ODS codes, not personal detail): the person's
    # registered GP practice and the organisation holding the plan. Optional: version 1
    # consumers read them or ignore them.
    registered_practice: str | None = Field(default=None, pattern=ORG_CODE)
    holder_org: str | None = Field(default=None, pattern=ORG_CODE)


@REGISTRY.register
class RiskFlagged(CarePlanEventData):
    EVENT_TYPE = "uk.waymark.care-plan.risk.flagged"
    VERSION = 1
    assessment_id: str = Field(max_length=64)
    instrument: Instrument
    reason: Literal["phq9_item9", "high_risk_band"]
    band: Band
    severity: Literal["urgent", "high"]


@REGISTRY.register
class BreakGlassUsed(CarePlanEventData):
    """A clinician read a plan in an emergency outside the usual relationships: the ICS's
    information governance lead reviews it. The free-text reason stays in the audit log."""

    EVENT_TYPE = "uk.waymark.care-plan.break-glass"
    VERSION = 1
    grant_id: str = Field(max_length=64)
    org: str = Field(pattern=ORG_CODE)
    reason_code: Literal["emergency-care", "patient-unable-to-consent", "safeguarding"]
    expires_at: AwareDatetime
