"""What the integration FHIR base serves, as its CapabilityStatement says (GET /fhir/metadata),
and its SMART configuration: the routes are shared/fhir_rest.py's, this is the list."""

from __future__ import annotations

from shared.fhir_rest import Base, Supported, discovery_router

BASE = Base(
    name="WaymarkIntegration",
    title="Waymark integration FHIR R4 base",
    description="The door for an EHR registered as a FHIR source: it sends Encounters and "
    "Appointments (one at a time, or in a transaction or batch Bundle), and the "
    "notifications of its topic-based Subscriptions (POST /fhir/subscription-notification). "
    "Waymark answers with a minimal Encounter, never the patient.",
    resources=(
        Supported(
            "Encounter",
            ("create", "read", "vread"),
            documentation="A contact (A&E, 111, crisis, GP...). Read: the source's own, as "
            "Waymark holds it (the latest revision).",
        ),
        Supported(
            "Appointment",
            ("create",),
            documentation="Recorded as a contact; answered as a minimal Encounter.",
        ),
    ),
    system=("transaction", "batch"),
)

router = discovery_router(BASE)
