"""What the notifications consumer does with an `EncounterRecorded` event, in the consumer's
transaction (with the inbox row, so a redelivered event is a no-op): the contact index keeps
each encounter at the highest revision seen. A lower or equal revision arriving later (a
redelivery, or partitions replayed out of order) changes nothing; cancelled and
entered-in-error contacts are kept as such, so the pages can leave them out."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.db import execute
from shared.events.encounters import EncounterRecorded
from shared.events.envelope import CloudEvent


async def index_encounter(
    session: AsyncSession, event: CloudEvent, data: EncounterRecorded
) -> None:
    """The contact at this revision, unless a higher (or the same) one is already indexed."""
    await execute(
        session,
        """
        INSERT INTO contact_index (encounter_id, revision, event_id, patient_id, contact_kind,
            planned, status, started_at, ended_at, source_org, source_system, channel,
            chief_complaint, diagnosis_codes, attendance_category, discharge_destination,
            updated_at)
        VALUES (:eid, :rev, :event_id, :pid, :kind, :planned, :status, :started, :ended,
            :org, :system, :channel, :complaint, :diagnoses, :category, :destination, now())
        ON CONFLICT (encounter_id) DO UPDATE SET revision = EXCLUDED.revision,
            event_id = EXCLUDED.event_id, patient_id = EXCLUDED.patient_id,
            contact_kind = EXCLUDED.contact_kind, planned = EXCLUDED.planned,
            status = EXCLUDED.status, started_at = EXCLUDED.started_at,
            ended_at = EXCLUDED.ended_at, source_org = EXCLUDED.source_org,
            source_system = EXCLUDED.source_system, channel = EXCLUDED.channel,
            chief_complaint = EXCLUDED.chief_complaint,
            diagnosis_codes = EXCLUDED.diagnosis_codes,
            attendance_category = EXCLUDED.attendance_category,
            discharge_destination = EXCLUDED.discharge_destination, updated_at = now()
        WHERE contact_index.revision < EXCLUDED.revision""",
        eid=data.encounter_id,
        rev=data.revision,
        event_id=event.id,
        pid=event.subject,
        kind=data.contact_kind.value,
        planned=data.planned,
        status=data.status.value,
        started=data.started_at,
        ended=data.ended_at,
        org=data.source_org,
        system=data.source_system,
        channel=data.channel,
        complaint=data.chief_complaint,
        diagnoses=list(data.diagnosis_codes),
        category=data.attendance_category,
        destination=data.discharge_destination,
    )
