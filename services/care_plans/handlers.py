"""Use cases of the care plans service: one per command. The caller's unit of work owns the
transaction; a change, its new version, its audit entry and its events commit together."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.care_plans import domain, events, fhir
from services.care_plans.domain import RiskFlag, Score
from services.care_plans.models import Assessment, CarePlan, CarePlanVersion, TimelineEntry
from services.care_plans.repository import CarePlanRepository
from services.care_plans.schemas import AssessmentIn, PlanContent, PlanCreate
from services.referrals.domain import normalise_nhs_number
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from shared.events.envelope import CloudEvent
from shared.events.referrals import ReferralEventData
from shared.outbox import add_event
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from shared.topics import CARE_PLANS


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PlanState:
    plan: CarePlan
    version: CarePlanVersion
    access: str  # why the caller may read it


def _dump(content: PlanContent) -> dict[str, Any]:
    return content.model_dump(mode="json")


def _carer_access(content: dict[str, Any]) -> dict[str, list[str]]:
    return {c["id"]: sorted(c.get("may_see", [])) for c in content.get("carers", [])}


async def create_plan(*, session: AsyncSession, principal: Principal, cmd: PlanCreate,
                      settings: Settings, client_ip: str | None = None) -> PlanState:
    domain.check_may_create(principal)
    nhs_number = normalise_nhs_number(cmd.nhs_number)
    patient_id = pseudonymise(nhs_number, settings)
    repo = CarePlanRepository(session)
    existing = await repo.by_patient(patient_id)
    if existing is not None:
        # one shared plan per person: say where it is only to those who may read it
        where = (f" ({existing.id})" if domain.access_reason(
            principal, holder_org=existing.holder_org, ics=existing.ics,
            consented_orgs=existing.consented_orgs) else "")
        raise Conflict(f"this person already has a care plan{where}; update it instead")
    now = _now()
    orgs = sorted(set(cmd.consented_organisations))
    plan = CarePlan(id=str(uuid.uuid4()), patient_id=patient_id, nhs_number=nhs_number,
                    ics=principal.ics, holder_org=principal.org, consented_orgs=orgs,
                    current_version=1, created_by=principal.user, created_at=now,
                    updated_at=now)
    version = CarePlanVersion(plan_id=plan.id, version=1, content=_dump(cmd.content),
                              consented_orgs=orgs, author=principal.user,
                              author_org=principal.org, reason=cmd.reason, created_at=now)
    repo.add(plan)
    try:
        await session.flush()  # a concurrent create for the same person fails here
    except IntegrityError:
        raise Conflict("this person already has a care plan; update it instead") from None
    repo.add(version)
    topic = settings.topic(CARE_PLANS)
    add_event(session, topic=topic, event=events.created_event(plan))
    if orgs or events.carers_with_access(cmd.content):
        add_event(session, topic=topic, event=events.consent_event(plan, cmd.content))
    record_audit(session, principal=principal, action="create", resource_type="CarePlan",
                 resource_id=plan.id, patient_id=patient_id, client_ip=client_ip,
                 detail="version 1")
    return PlanState(plan, version, "holder")


async def readable_plan(*, session: AsyncSession, principal: Principal, plan_id: str,
                        for_update: bool = False) -> tuple[CarePlan, str]:
    """The plan if it exists and the caller may read it (NotFound / Forbidden otherwise)."""
    plan = await CarePlanRepository(session).get(plan_id, for_update=for_update)
    if plan is None:
        raise NotFound(f"no care plan {plan_id}")
    reason = domain.check_may_read(principal, holder_org=plan.holder_org, ics=plan.ics,
                                   consented_orgs=plan.consented_orgs)
    return plan, reason


async def read_plan(*, session: AsyncSession, principal: Principal, plan_id: str,
                    version: int | None = None, resource_type: str = "CarePlan",
                    client_ip: str | None = None, detail: str | None = None) -> PlanState:
    """A version of the plan (the current one by default), audited as a read."""
    plan, reason = await readable_plan(session=session, principal=principal, plan_id=plan_id)
    number = plan.current_version if version is None else version
    row = await CarePlanRepository(session).version(plan.id, number)
    if row is None:
        raise NotFound(f"care plan {plan_id} has no version {number} (it is at "
                       f"{plan.current_version})")
    record_audit(session, principal=principal, action="read", resource_type=resource_type,
                 resource_id=plan.id, patient_id=plan.patient_id, client_ip=client_ip,
                 detail=detail or f"version {number}; access: {reason}")
    return PlanState(plan, row, reason)


async def _writable(session: AsyncSession, principal: Principal, plan_id: str,
                    expected_version: int) -> tuple[CarePlan, CarePlanVersion, str]:
    plan, _ = await readable_plan(session=session, principal=principal, plan_id=plan_id,
                                  for_update=True)  # serialises concurrent edits
    reason = domain.check_may_write(principal, holder_org=plan.holder_org, ics=plan.ics,
                                    consented_orgs=plan.consented_orgs)
    if plan.current_version != expected_version:
        raise PreconditionFailed(
            f"the care plan has changed since you read it (you have version "
            f"{expected_version}, it is at {plan.current_version}); read it again",
            current_version=plan.current_version)
    current = await CarePlanRepository(session).version(plan.id, plan.current_version)
    assert current is not None
    return plan, current, reason


def _new_version(plan: CarePlan, *, content: dict[str, Any], orgs: list[str],
                 principal: Principal, reason: str) -> CarePlanVersion:
    now = _now()
    plan.current_version += 1
    plan.consented_orgs = orgs
    plan.updated_at = now
    return CarePlanVersion(plan_id=plan.id, version=plan.current_version, content=content,
                           consented_orgs=orgs, author=principal.user,
                           author_org=principal.org, reason=reason, created_at=now)


async def update_plan(*, session: AsyncSession, principal: Principal, plan_id: str,
                      content: PlanContent, reason: str, expected_version: int,
                      settings: Settings, client_ip: str | None = None) -> PlanState:
    plan, current, access = await _writable(session, principal, plan_id, expected_version)
    new_content = _dump(content)
    version = _new_version(plan, content=new_content, orgs=list(plan.consented_orgs),
                           principal=principal, reason=reason)
    session.add(plan)
    session.add(version)
    topic = settings.topic(CARE_PLANS)
    add_event(session, topic=topic, event=events.updated_event(plan))
    if _carer_access(current.content) != _carer_access(new_content):
        add_event(session, topic=topic, event=events.consent_event(plan, content))
    record_audit(session, principal=principal, action="update", resource_type="CarePlan",
                 resource_id=plan.id, patient_id=plan.patient_id, client_ip=client_ip,
                 detail=f"version {version.version}")
    return PlanState(plan, version, access)


async def change_consent(*, session: AsyncSession, principal: Principal, plan_id: str,
                         organisations: list[str], reason: str, expected_version: int,
                         settings: Settings, client_ip: str | None = None) -> PlanState:
    """The person's choice of organisations that may read the plan: a new version and a
    consent.changed event."""
    plan, current, access = await _writable(session, principal, plan_id, expected_version)
    orgs = sorted(set(organisations))
    if orgs == sorted(plan.consented_orgs):
        raise ValidationFailed("the consent is already exactly this; nothing to change")
    version = _new_version(plan, content=current.content, orgs=orgs, principal=principal,
                           reason=reason)
    session.add(plan)
    session.add(version)
    topic = settings.topic(CARE_PLANS)
    add_event(session, topic=topic, event=events.updated_event(plan))
    add_event(session, topic=topic,
              event=events.consent_event(plan, PlanContent.model_validate(current.content)))
    record_audit(session, principal=principal, action="consent", resource_type="CarePlan",
                 resource_id=plan.id, patient_id=plan.patient_id, client_ip=client_ip,
                 detail=f"version {version.version}; organisations: {', '.join(orgs) or '-'}")
    # the caller may have removed their own organisation: what they may now do is re-checked
    # on their next request
    return PlanState(plan, version, access)


@dataclass(frozen=True)
class RecordedAssessment:
    assessment: Assessment
    score: Score
    flags: list[RiskFlag]
    events: list[CloudEvent]


async def record_assessment(*, session: AsyncSession, principal: Principal, plan_id: str,
                            cmd: AssessmentIn, settings: Settings,
                            client_ip: str | None = None) -> RecordedAssessment:
    """Score the answers, store them as a QuestionnaireResponse, and stage assessment.recorded
    and any risk.flagged event: all in the caller's one transaction."""
    instrument = domain.instrument_from(cmd.instrument)
    answers = domain.validate_answers(instrument, cmd.answers)
    result = domain.score(instrument, cmd.answers)
    flags = domain.risk_flags(result)
    plan, _ = await readable_plan(session=session, principal=principal, plan_id=plan_id)
    domain.check_may_write(principal, holder_org=plan.holder_org, ics=plan.ics,
                           consented_orgs=plan.consented_orgs)
    now = _now()
    authored = cmd.authored or now
    if authored > now:
        raise ValidationFailed("authored must not be in the future")
    assessment_id = str(uuid.uuid4())
    assessment = Assessment(
        id=assessment_id, plan_id=plan.id, patient_id=plan.patient_id,
        instrument=instrument.value, total=result.total, band=result.band,
        subscale=result.subscale, safety_flag=result.safety_flag,
        risk_flags=[{"reason": f.reason, "severity": f.severity} for f in flags],
        questionnaire_response=fhir.questionnaire_response(
            assessment_id=assessment_id, instrument=instrument, answers=answers, result=result,
            patient_id=plan.patient_id, authored=authored, author_org=principal.org),
        authored=authored, recorded_by=principal.user, recorded_org=principal.org,
        recorded_at=now)
    CarePlanRepository(session).add(assessment)
    await session.flush()
    topic = settings.topic(CARE_PLANS)
    staged = [events.assessment_event(plan, assessment, result)]
    staged += [events.risk_event(plan, assessment, result, f) for f in flags]
    for event in staged:
        add_event(session, topic=topic, event=event)
    record_audit(session, principal=principal, action="create", resource_type="Assessment",
                 resource_id=assessment.id, patient_id=plan.patient_id, client_ip=client_ip,
                 detail=f"{instrument.value} on plan {plan.id}")
    return RecordedAssessment(assessment, result, flags, staged)


async def apply_referral_event(*, session: AsyncSession, event: CloudEvent,
                               data: ReferralEventData) -> bool:
    """Add a step to the person's referral journey (the plan's timeline); True if new."""
    return await CarePlanRepository(session).add_timeline_entry(TimelineEntry(
        event_id=event.id, patient_id=event.subject, referral_id=data.referral_id,
        event_type=event.type.removeprefix("uk.waymark.referral."), state=data.state,
        previous_state=data.previous_state, from_org=data.from_org, to_org=data.to_org,
        to_service_id=data.to_service_id, service_category=data.service_category,
        transition_reason=data.transition_reason, occurred_at=event.time))
