"""What the care plans FHIR base serves, as its CapabilityStatement says (GET /fhir/metadata),
and its SMART configuration: the routes are shared/fhir_rest.py's, this is the list."""

from __future__ import annotations

from shared.fhir_rest import Base, SearchParam, Supported, discovery_router

BASE = Base(
    name="WaymarkCarePlans",
    title="Waymark care plans FHIR R4 base",
    description="A person's shared personalised care and support plan (CarePlan, its Goals), "
    "screening answers (QuestionnaireResponse) and the published screening Questionnaires "
    "(STarT Back, PHQ-9, GAD-7); the person is a Patient carrying the pseudonymous id only.",
    resources=(
        Supported("CarePlan", ("read",), documentation="The plan's current version."),
        Supported("Goal", ("read",), documentation="A goal of the plan's current version."),
        Supported(
            "QuestionnaireResponse",
            ("read",),
            documentation="An assessment's answers, with its score as extensions.",
            versioning="no-version",
        ),
        Supported(
            "Questionnaire",
            ("read", "search-type"),
            (SearchParam("url", "uri", "the canonical a QuestionnaireResponse names"),),
            "The screening instruments, worded and scored as published.",
            versioning="no-version",
        ),
        Supported(
            "Patient",
            ("read",),
            documentation="CarePlan.subject: the pseudonymous id only, no name or NHS number.",
            versioning="no-version",
        ),
    ),
)

router = discovery_router(BASE)
