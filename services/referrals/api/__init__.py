"""The referrals service's HTTP API: the app, with one router per area (routes only: parse,
authorise, call a handler, render). Routes are included in the order they are documented."""

from __future__ import annotations

from services.referrals.api import capability, fhir, history, referrals, tasks
from shared.fhir import operation_outcome
from shared.fhir_rest import fhir_openapi
from shared.web import create_app

app = create_app(
    "referrals",
    title="Waymark referrals",
    description="Closed-loop referrals between GP, pain, talking therapies, "
    "physiotherapy and community services, with a FHIR R4 face.",
    error_renderers={"/fhir": operation_outcome},
)

for area in (history, referrals, capability, fhir, tasks):
    app.include_router(area.router)
fhir_openapi(app)
