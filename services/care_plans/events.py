"""The events the care plans service publishes (models live in shared/events/care_plans.py).

Subjects are the person's pseudonym; no event carries plan content or questionnaire answers."""

from __future__ import annotations

from services.care_plans.domain.screening import RiskFlag, Score
from services.care_plans.models import Assessment, BreakGlassGrant, CarePlan
from services.care_plans.schemas import PlanContent
from shared.events.care_plans import (
    AssessmentRecorded,
    BreakGlassUsed,
    CarePlanCreated,
    CarePlanUpdated,
    ConsentChanged,
    RiskFlagged,
)
from shared.events.envelope import CloudEvent, make_event


def created_event(plan: CarePlan) -> CloudEvent:
    return make_event(
        CarePlanCreated(plan_id=plan.id, version=plan.current_version), subject=plan.patient_id
    )


def updated_event(plan: CarePlan) -> CloudEvent:
    return make_event(
        CarePlanUpdated(plan_id=plan.id, version=plan.current_version), subject=plan.patient_id
    )


def carers_with_access(content: PlanContent) -> int:
    return sum(1 for c in content.carers if c.may_see)


def consent_event(plan: CarePlan, content: PlanContent) -> CloudEvent:
    return make_event(
        ConsentChanged(
            plan_id=plan.id,
            organisations=sorted(plan.consented_orgs),
            carers_with_access=carers_with_access(content),
        ),
        subject=plan.patient_id,
    )


def assessment_event(
    plan: CarePlan, assessment: Assessment, result: Score, *, registered_practice: str | None = None
) -> CloudEvent:
    data = AssessmentRecorded(
        plan_id=plan.id,
        assessment_id=assessment.id,
        instrument=result.instrument.value,
        total=result.total,
        band=result.band,
        subscale=result.subscale,
        safety_flag=result.safety_flag,
        registered_practice=registered_practice,
        holder_org=plan.holder_org,
    )
    return make_event(data, subject=plan.patient_id)


def risk_event(plan: CarePlan, assessment: Assessment, result: Score, flag: RiskFlag) -> CloudEvent:
    data = RiskFlagged(
        plan_id=plan.id,
        assessment_id=assessment.id,
        instrument=result.instrument.value,
        reason=flag.reason,  # type: ignore[arg-type]
        band=result.band,
        severity=flag.severity,
    )  # type: ignore[arg-type]
    return make_event(data, subject=plan.patient_id)


def break_glass_event(plan: CarePlan, grant: BreakGlassGrant) -> CloudEvent:
    data = BreakGlassUsed(
        plan_id=plan.id,
        grant_id=grant.id,
        org=grant.org,
        reason_code=grant.reason_code,  # type: ignore[arg-type]
        expires_at=grant.expires_at,
    )
    return make_event(data, subject=plan.patient_id)
