"""The FHIR R4 face of care plans: Questionnaire, CarePlan, Goal, QuestionnaireResponse, and
the Patient their subject references."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.care_plans import fhir
from services.care_plans.api.reads import check_id, read_of_patient, read_plan_as
from services.care_plans.repository import CarePlanRepository
from shared.auth import CurrentPrincipal
from shared.errors import NotFound
from shared.fhir import FHIR_ERRORS, fhir_response, minimal_patient, pseudonym_of
from shared.fhir_rest import page_of, search_bundle, served_base
from shared.web import SessionDep, weak_etag

router = APIRouter()


@router.get("/fhir/Questionnaire/{questionnaire_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_questionnaire(
    questionnaire_id: str, request: Request, principal: CurrentPrincipal
) -> Response:
    """The published definition of STarT-Back, PHQ-9 or GAD-7, with each answer's score; its
    canonical URL is this address."""
    instrument = fhir.QUESTIONNAIRE_IDS.get(questionnaire_id)
    if instrument is None:
        raise NotFound(
            f"no Questionnaire {questionnaire_id}; one of {', '.join(fhir.QUESTIONNAIRE_IDS)}"
        )
    return fhir_response(fhir.questionnaire(instrument, served_base(request)))


@router.get("/fhir/Questionnaire", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_search_questionnaires(
    request: Request,
    principal: CurrentPrincipal,
    url: Annotated[str | None, Query(max_length=300)] = None,
    count: Annotated[str | None, Query(alias="_count", max_length=12)] = None,
    offset: Annotated[str | None, Query(alias="_offset", max_length=12)] = None,
) -> Response:
    """The published Questionnaires, or the one a canonical names (url=, as a
    QuestionnaireResponse.questionnaire gives it)."""
    page = page_of(count, offset)
    base = served_base(request)
    if url is None:
        found = list(fhir.QUESTIONNAIRE_IDS.values())
    else:
        instrument = fhir.instrument_of(url, base)
        found = [instrument] if instrument is not None else []
    resources = [fhir.questionnaire(i, base) for i in found]
    shown = resources[page.offset : page.offset + page.count]
    return fhir_response(search_bundle(request, shown, total=len(resources), page=page))


@router.get("/fhir/Patient/{patient_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_patient(
    patient_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The person a CarePlan's subject names, as a minimal Patient (the pseudonymous id only),
    for whoever may read their plan; otherwise a 404."""
    state = await read_of_patient(
        request,
        session,
        principal,
        pseudonym_of(patient_id[:120]),
        resource_type="Patient",
        detail="fhir Patient",
    )
    return fhir_response(minimal_patient(state.plan.patient_id))


@router.get("/fhir/CarePlan/{plan_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_care_plan(
    plan_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The current version as an R4 CarePlan (goals as references to Goal)."""
    state = await read_plan_as(request, session, principal, plan_id, detail="fhir CarePlan")
    return fhir_response(
        fhir.care_plan(state.plan, state.version),
        headers={"ETag": weak_etag(state.version.version)},
    )


@router.get("/fhir/Goal/{goal_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_goal(
    goal_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """A goal of a plan's current version as an R4 Goal (id: `<plan id hex>.<goal id>`)."""
    ids = fhir.parse_goal_fhir_id(goal_id)
    if ids is None:
        raise NotFound(f"no Goal {goal_id}")
    state = await read_plan_as(
        request, session, principal, ids[0], resource_type="Goal", detail=f"goal {ids[1]}"
    )
    g = next((g for g in state.version.content["goals"] if g["id"] == ids[1]), None)
    if g is None:
        raise NotFound(f"no Goal {goal_id} in the plan's current version")
    return fhir_response(fhir.goal(state.plan, g))


@router.get("/fhir/QuestionnaireResponse/{assessment_id}", responses=FHIR_ERRORS, tags=["fhir"])
async def fhir_questionnaire_response(
    assessment_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """An assessment's answers as the stored R4 QuestionnaireResponse."""
    check_id(assessment_id, "QuestionnaireResponse")
    a = await CarePlanRepository(session).assessment(assessment_id)
    if a is None:
        raise NotFound(f"no QuestionnaireResponse {assessment_id}")
    await read_plan_as(
        request,
        session,
        principal,
        a.plan_id,
        resource_type="QuestionnaireResponse",
        detail=f"assessment {assessment_id}",
    )
    return fhir_response(fhir.stored_response(a, served_base(request)))
