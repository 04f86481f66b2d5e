"""The FHIR face of care plans: the three screening Questionnaires the service publishes,
answers stored as QuestionnaireResponse, and CarePlan and Goal exports.

Every resource is validated with `fhir.resources` (R4B package; CarePlan, Goal, Questionnaire
and QuestionnaireResponse are unchanged in the elements used here between R4 and R4B) before it
is stored or returned.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from services.care_plans.domain.screening import INSTRUMENTS, Score
from services.care_plans.models import Assessment, CarePlan, CarePlanVersion
from shared.fhir import ODS_SYSTEM, patient_reference
from shared.vocabulary import Instrument

BASE = "https://waymark.nhs.example/fhir"
#: where the Questionnaires' canonicals pointed before they were served at the base that serves
#: them; a QuestionnaireResponse stored then names it, and `?url=` still finds it
QUESTIONNAIRE_BASE = f"{BASE}/Questionnaire/"
ANSWER_SYSTEM = f"{BASE}/CodeSystem/screening-answer"
BAND_SYSTEM = f"{BASE}/CodeSystem/screening-band"
EXT = f"{BASE}/StructureDefinition/"

#: Questionnaire ids are the instrument names (FHIR ids allow letters, digits, '-' and '.')
QUESTIONNAIRE_IDS = {i.value: i for i in Instrument}


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate with fhir.resources (R4B); a resource we build that fails is a bug."""
    from fhir.resources.R4B.careplan import CarePlan as FhirCarePlan
    from fhir.resources.R4B.goal import Goal
    from fhir.resources.R4B.questionnaire import Questionnaire
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

    model = {
        "CarePlan": FhirCarePlan,
        "Goal": Goal,
        "Questionnaire": Questionnaire,
        "QuestionnaireResponse": QuestionnaireResponse,
    }[resource["resourceType"]]
    model.model_validate(resource)
    return resource


def _iso(dt: datetime) -> str:
    return dt.isoformat()


def _patient(patient_id: str) -> dict[str, Any]:
    # a reference the base answers (GET Patient/<id>: the pseudonymous identifier only), with
    # the identifier kept for a client that does not follow it
    return patient_reference(patient_id)


def canonical(base: str, instrument: Instrument) -> str:
    """A Questionnaire's canonical URL: where the base that serves it answers a GET for it."""
    return f"{base}/Questionnaire/{instrument.value}"


def instrument_of(url: str, base: str) -> Instrument | None:
    """The instrument a canonical names (`|version` allowed): the served one or the old one."""
    url = url.split("|", 1)[0]
    for prefix in (f"{base}/Questionnaire/", QUESTIONNAIRE_BASE):
        if url.startswith(prefix):
            return QUESTIONNAIRE_IDS.get(url.removeprefix(prefix))
    return None


def questionnaire(instrument: Instrument, base: str) -> dict[str, Any]:
    spec = INSTRUMENTS[instrument]
    items = []
    for n, text in enumerate(spec.items, start=1):
        items.append(
            {
                "linkId": str(n),
                "text": text,
                "type": "choice",
                "required": True,
                "answerOption": [
                    {
                        "valueCoding": {"system": ANSWER_SYSTEM, "code": code, "display": display},
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/StructureDefinition/ordinalValue",
                                "valueDecimal": points,
                            }
                        ],
                    }
                    for code, display, points in spec.answers_for(n)
                ],
            }
        )
    return validate(
        {
            "resourceType": "Questionnaire",
            "id": instrument.value,
            "url": canonical(base, instrument),
            "version": "1",
            "name": instrument.value.replace("-", ""),
            "title": spec.title,
            "status": "active",
            "subjectType": ["Patient"],
            "description": f"Scored as published: {spec.source}",
            "item": items,
        }
    )


def questionnaire_response(
    *,
    assessment_id: str,
    instrument: Instrument,
    answers: dict[int, str],
    result: Score,
    patient_id: str,
    authored: datetime,
    author_org: str,
) -> dict[str, Any]:
    spec = INSTRUMENTS[instrument]
    items = []
    for n in range(1, spec.item_count + 1):
        code = answers[n]
        display = next(d for c, d, _ in spec.answers_for(n) if c == code)
        items.append(
            {
                "linkId": str(n),
                "text": spec.items[n - 1],
                "answer": [
                    {"valueCoding": {"system": ANSWER_SYSTEM, "code": code, "display": display}}
                ],
            }
        )
    score_ext = [
        {"url": EXT + "screening-total", "valueInteger": result.total},
        {
            "url": EXT + "screening-band",
            "valueCoding": {"system": BAND_SYSTEM, "code": result.band},
        },
    ]
    if result.subscale is not None:
        score_ext.append({"url": EXT + "screening-subscale", "valueInteger": result.subscale})
    if instrument is Instrument.PHQ9:
        score_ext.append({"url": EXT + "safety-flag", "valueBoolean": result.safety_flag})
    return validate(
        {
            "resourceType": "QuestionnaireResponse",
            "id": assessment_id,
            "questionnaire": QUESTIONNAIRE_BASE + instrument.value,
            "status": "completed",
            "subject": _patient(patient_id),
            "authored": _iso(authored),
            "author": {"identifier": {"system": ODS_SYSTEM, "value": author_org}},
            "extension": score_ext,
            "item": items,
        }
    )


GOAL_STATUS = {
    "proposed": "proposed",
    "active": "active",
    "achieved": "completed",
    "on_hold": "on-hold",
    "cancelled": "cancelled",
}
ACTION_STATUS = {
    "agreed": "not-started",
    "in_progress": "in-progress",
    "done": "completed",
    "cancelled": "cancelled",
}


def goal_fhir_id(plan_id: str, goal_id: str) -> str:
    """Goal ids are the plan's own; the FHIR id puts the plan first so it is unique."""
    return f"{uuid.UUID(plan_id).hex}.{goal_id}"


def parse_goal_fhir_id(fhir_id: str) -> tuple[str, str] | None:
    """(plan id, goal id) of a Goal's FHIR id, or None if it is not one."""
    plan_hex, _, goal_id = fhir_id.partition(".")
    if not re.fullmatch(r"[0-9a-f]{32}", plan_hex) or not re.fullmatch(
        r"[A-Za-z0-9-]{1,31}", goal_id
    ):
        return None
    return str(uuid.UUID(plan_hex)), goal_id


def goal(plan: CarePlan, g: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Goal",
        "id": goal_fhir_id(plan.id, g["id"]),
        "lifecycleStatus": GOAL_STATUS[g["status"]],
        "description": {"text": g["what"]},
        "subject": _patient(plan.patient_id),
        "expressedBy": {"display": g.get("owner_name") or g["owner"]},
    }
    if g["status"] == "achieved":
        resource["achievementStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/goal-achievement",
                    "code": "achieved",
                }
            ]
        }
    if g.get("by_when"):
        resource["target"] = [{"dueDate": g["by_when"]}]
    return validate(resource)


def care_plan(plan: CarePlan, version: CarePlanVersion) -> dict[str, Any]:
    content = version.content
    activities = []
    for a in content.get("actions", []):
        detail: dict[str, Any] = {"status": ACTION_STATUS[a["status"]], "description": a["what"]}
        who = a.get("service_name") or a["who"]
        detail["performer"] = [{"display": who}]
        if a.get("due"):
            detail["scheduledString"] = f"by {a['due']}"
        activities.append({"detail": detail})
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": plan.id,
        "meta": {"versionId": str(version.version), "lastUpdated": _iso(version.created_at)},
        "status": "active",
        "intent": "plan",
        "title": "Personalised care and support plan",
        "description": content.get("what_matters_to_me") or "What matters to me: not recorded",
        "subject": _patient(plan.patient_id),
        "created": _iso(plan.created_at),
        "author": {"identifier": {"system": ODS_SYSTEM, "value": version.author_org}},
        "goal": [
            {"reference": f"Goal/{goal_fhir_id(plan.id, g['id'])}"}
            for g in content.get("goals", [])
        ],
        "activity": activities,
        "note": [{"text": f"Version {version.version}: {version.reason}"}],
    }
    crisis = crisis_note(content.get("crisis") or {})
    if crisis:
        resource["note"].append({"text": crisis})
    if content.get("next_review_date"):
        resource["period"] = {"end": content["next_review_date"]}
    if not resource["goal"]:
        del resource["goal"]
    if not activities:
        del resource["activity"]
    return validate(resource)


def crisis_note(crisis: dict[str, Any]) -> str | None:
    """The crisis plan as one Annotation text (FHIR R4 CarePlan has no element of its own for
    it): when it applies, what to do, who to call."""
    parts = []
    if crisis.get("when"):
        parts.append(f"When: {crisis['when']}")
    if crisis.get("plan"):
        parts.append(f"What to do: {crisis['plan']}")
    calls = []
    for c in crisis.get("who_to_call") or []:
        about = c.get("relationship") or c.get("role")
        calls.append(f"{c.get('name')}{f' ({about})' if about else ''}: {c.get('phone')}")
    if calls:
        parts.append("Who to call: " + "; ".join(calls))
    return "Crisis plan\n" + "\n".join(parts) if parts else None


def stored_response(a: Assessment, base: str) -> dict[str, Any]:
    """The stored QuestionnaireResponse as served: its Questionnaire's canonical at this base
    (so it resolves) and its subject a reference the base answers."""
    resource = dict(a.questionnaire_response)
    resource["questionnaire"] = canonical(base, Instrument(a.instrument))
    resource["subject"] = _patient(a.questionnaire_response["subject"]["identifier"]["value"])
    return validate(resource)
