"""The events the integration service publishes: one per new or changed contact."""

from __future__ import annotations

from services.integration.staging import Contact
from shared.events.encounters import EncounterRecorded
from shared.events.envelope import CloudEvent, make_event


def encounter_recorded(row: Contact) -> CloudEvent:
    """The contact as codes: the source's identifiers and the NHS number stay here. The event's
    time is when Waymark learned of this revision (the contact's own times are in the data)."""
    data = EncounterRecorded(
        encounter_id=str(row.id),
        revision=row.revision,
        contact_kind=row.contact_kind,  # type: ignore[arg-type]
        planned=row.planned,
        status=row.status,  # type: ignore[arg-type]
        started_at=row.started_at,
        ended_at=row.ended_at,
        source_org=row.source_org,
        source_system=row.source_system,
        channel=row.channel,  # type: ignore[arg-type]
        chief_complaint=row.chief_complaint,
        diagnosis_codes=list(row.diagnosis_codes),
        attendance_category=row.attendance_category,
        discharge_destination=row.discharge_destination,
    )
    return make_event(data, subject=row.patient_id)
