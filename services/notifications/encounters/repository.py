"""The queries of the contact index that the pages make (the consumer's write is effects.py),
through the one database helper."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.db import execute

#: the most contacts one person's timeline shows (the most recent ones)
PERSON_LIMIT = 200


@dataclass(frozen=True)
class Contact:
    """One contact as the timeline needs it: codes and times, nothing that names the person."""

    encounter_id: str
    revision: int
    contact_kind: str
    planned: bool
    status: str
    started_at: datetime
    ended_at: datetime | None
    source_org: str
    channel: str


async def person_contacts(
    session: AsyncSession, patient_id: str, *, limit: int = PERSON_LIMIT
) -> list[Contact]:
    """The person's most recent contacts (all statuses: the timeline decides what it shows),
    oldest first."""
    result = await execute(
        session,
        """
        SELECT * FROM (
            SELECT encounter_id, revision, contact_kind, planned, status, started_at, ended_at,
                   source_org, channel
            FROM contact_index WHERE patient_id = :pid
            ORDER BY started_at DESC, encounter_id DESC LIMIT :limit) recent
        ORDER BY started_at, encounter_id""",
        pid=patient_id,
        limit=limit,
    )
    return [
        Contact(
            r.encounter_id,
            r.revision,
            r.contact_kind,
            r.planned,
            r.status,
            r.started_at,
            r.ended_at,
            r.source_org,
            r.channel,
        )
        for r in result.all()
    ]
