"""The care plans service's HTTP API: the app, with one router per area (routes only: parse,
authorise, call a handler, render). Routes are included in the order they are documented."""

from __future__ import annotations

from services.care_plans.api import assessments, capability, fhir, history, plans, summaries
from shared.fhir import operation_outcome
from shared.fhir_rest import fhir_openapi
from shared.web import create_app

app = create_app(
    "care_plans",
    title="Waymark care plans",
    description="One shared personalised care and support plan per person, with "
    "versions, consent, screening scored exactly (STarT Back, PHQ-9, "
    "GAD-7) and risk flagged at once; a FHIR R4 face.",
    error_renderers={"/fhir": operation_outcome},
)

for area in (plans, history, summaries, assessments, capability, fhir):
    app.include_router(area.router)
fhir_openapi(app)
