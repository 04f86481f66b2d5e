"""Encounter events as the integration service publishes them (codes only; the subject is the
person's pseudonym), for the notifications tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.events.encounters import EncounterRecorded
from shared.events.envelope import CloudEvent, make_event


def new_patient() -> str:
    return f"pt_{uuid.uuid4().hex[:16]}"


def encounter_event(
    *,
    patient: str,
    encounter_id: str | None = None,
    revision: int = 1,
    kind: str = "ae_attendance",
    planned: bool = False,
    status: str = "finished",
    started_at: datetime | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> CloudEvent:
    data = EncounterRecorded(
        encounter_id=encounter_id or str(uuid.uuid4()),
        revision=revision,
        contact_kind=kind,  # type: ignore[arg-type]
        planned=planned,
        status=status,  # type: ignore[arg-type]
        started_at=started_at or datetime.now(UTC),
        source_org=extra.pop("source_org", "RXX01"),
        source_system=extra.pop("source_system", "pas-test"),
        channel=extra.pop("channel", "hl7v2"),
        **extra,
    )
    return make_event(data, subject=patient, event_id=event_id)
