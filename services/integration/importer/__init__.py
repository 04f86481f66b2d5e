"""Bulk history at go-live: the importer an ICS's operator runs once per extract file
(`python -m services.integration.importer ecds|gpad|ers FILE --source ID`), for 12 months of
A&E attendances (ECDS-shaped), GP appointments (GPAD-shaped) and e-RS referrals, as CSV or
NDJSON. docs/integration/bulk.md describes the extracts and how to run it.

Modules: `domain` (pure: a record's rules and what it becomes), `reader` (CSV/NDJSON records),
`runner` (one import: resumable, idempotent per record, dry run), `referrals` (the referrals
service's historical import path), `store` (the runs), `report` (per-record report, progress),
`redrive` (re-applying a bulk dead letter).
"""
