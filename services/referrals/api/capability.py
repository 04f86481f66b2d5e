"""What the referrals FHIR base serves, as its CapabilityStatement says (GET /fhir/metadata),
and its SMART configuration: the routes are shared/fhir_rest.py's, this is the list."""

from __future__ import annotations

from shared.fhir_rest import Base, SearchParam, Supported, discovery_router

BASE = Base(
    name="WaymarkReferrals",
    title="Waymark referrals FHIR R4 base",
    description="Closed-loop referrals: a referral is a ServiceRequest (create, read, search), "
    "where it stands is its Task (read, search by based-on, status written back by the "
    "receiving system), and the person is a Patient carrying the pseudonymous id only.",
    resources=(
        Supported(
            "ServiceRequest",
            ("read", "search-type", "create"),
            (
                SearchParam("patient", "reference", "NHS number (system|value) or pseudonym"),
                SearchParam("status", "token", "FHIR ServiceRequest status"),
                SearchParam("_lastUpdated", "date", "ge or gt a date or dateTime"),
            ),
            "A referral. Search is paged, oldest first.",
        ),
        Supported(
            "Task",
            ("read", "search-type", "update"),
            (
                SearchParam("based-on", "reference", "ServiceRequest/<id>"),
                SearchParam("focus", "reference", "ServiceRequest/<id>"),
            ),
            "Where a referral stands; PUT (or POST with basedOn) writes back its status.",
        ),
        Supported(
            "Patient",
            ("read",),
            documentation="Task.for: the pseudonymous id only, no name or NHS number.",
            versioning="no-version",
        ),
    ),
)

router = discovery_router(BASE)
