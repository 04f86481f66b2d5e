"""Recording a screening assessment: scored, stored, and any risk flagged at once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans import events, fhir
from services.care_plans.domain.screening import (
    RiskFlag,
    Score,
    instrument_from,
    risk_flags,
    score,
    validate_answers,
)
from services.care_plans.handlers.access import plan_access, utc_now
from services.care_plans.models import Assessment
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import AssessmentIn
from shared.access import Capability, Principal
from shared.audit import record_audit
from shared.errors import ValidationFailed
from shared.events.envelope import CloudEvent
from shared.outbox import add_event
from shared.settings import Settings
from shared.topics import CARE_PLANS


@dataclass(frozen=True)
class RecordedAssessment:
    assessment: Assessment
    score: Score
    flags: list[RiskFlag]
    events: list[CloudEvent]


async def record_assessment(
    *,
    session: AsyncSession,
    principal: Principal,
    plan_id: str,
    cmd: AssessmentIn,
    settings: Settings,
    client_ip: str | None = None,
) -> RecordedAssessment:
    """Score the answers, store them as a QuestionnaireResponse, and stage assessment.recorded
    and any risk.flagged event: all in the caller's one transaction."""
    instrument = instrument_from(cmd.instrument)
    answers = validate_answers(instrument, cmd.answers)
    result = score(instrument, cmd.answers)
    flags = risk_flags(result)
    plan, _ = await plan_access(
        session=session,
        principal=principal,
        plan_id=plan_id,
        capability=Capability.CARE_PLAN_WRITE,
        settings=settings,
    )
    now = utc_now()
    authored = cmd.authored or now
    if authored > now:
        raise ValidationFailed("authored must not be in the future")
    assessment_id = str(uuid.uuid4())
    assessment = Assessment(
        id=assessment_id,
        plan_id=plan.id,
        patient_id=plan.patient_id,
        instrument=instrument.value,
        total=result.total,
        band=result.band,
        subscale=result.subscale,
        safety_flag=result.safety_flag,
        risk_flags=[{"reason": f.reason, "severity": f.severity} for f in flags],
        questionnaire_response=fhir.questionnaire_response(
            assessment_id=assessment_id,
            instrument=instrument,
            answers=answers,
            result=result,
            patient_id=plan.patient_id,
            authored=authored,
            author_org=principal.org,
        ),
        authored=authored,
        recorded_by=principal.identity,
        recorded_org=principal.org,
        recorded_at=now,
    )
    repo = CarePlanRepository(session)
    repo.add(assessment)
    await session.flush()
    topic = settings.topic(CARE_PLANS)
    # who must hear of a safety flag at once: the person's GP practice (if a referral event
    # has named it) and the plan's holder
    staged = [
        events.assessment_event(
            plan,
            assessment,
            result,
            registered_practice=await repo.registered_practice(plan.patient_id),
        )
    ]
    staged += [events.risk_event(plan, assessment, result, f) for f in flags]
    for event in staged:
        add_event(session, topic=topic, event=event)
    record_audit(
        session,
        principal=principal,
        action="create",
        resource_type="Assessment",
        resource_id=assessment.id,
        patient_id=plan.patient_id,
        client_ip=client_ip,
        detail=f"{instrument.value} on plan {plan.id}",
    )
    return RecordedAssessment(assessment, result, flags, staged)
