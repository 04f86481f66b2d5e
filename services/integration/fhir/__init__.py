"""FHIR R4 REST into the integration service: Encounter and Appointment, transaction and batch
Bundles, and topic-based Subscription notifications (the subscriptions backport IG's shape).

- `validation`: structural validation with `fhir.resources` (issues name their FHIRPath);
- `mapping`: a validated resource to a `ContactReport` (pure), and a contact back to FHIR;
- `notifications`: a notification Bundle's SubscriptionStatus (pure);
- `channel`: the resources applied through `handlers.apply_message` (and the re-driver);
- `api`: the routes under /fhir of the integration API.

docs/integration/fhir.md is the partner's guide.
"""
