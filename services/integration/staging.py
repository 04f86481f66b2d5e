"""What a batch of messages writes, collected while services/integration/applying.py decides
them: the contacts created or changed, the message log, the contacts' outbox events and their
audit entries, as plain records, written by `repository.write_batch` in one statement of
column arrays.

Plain records, not ORM objects: constructing an ORM object per row (four a message) and
flushing them was most of a message's CPU in the listener (issue #17's profile). The rows and
their values are the ones the ORM wrote; a contact's event is still built and validated by its
pydantic model (services/integration/events.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from opentelemetry import trace

from services.integration.domain import ContactFacts
from shared.access import Principal
from shared.events.envelope import CloudEvent
from shared.telemetry import current_traceparent
from shared.vocabulary import ContactKind, ContactStatus


@dataclass(slots=True, eq=False)
class Contact:
    """An encounter row as the batch knows it: read (locked) from the database, or new."""

    id: uuid.UUID
    source_system: str
    source_ref: str
    patient_id: str
    channel: str
    revision: int = 0
    contact_kind: str = ""
    planned: bool = False
    status: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    source_org: str = ""
    chief_complaint: str | None = None
    diagnosis_codes: list[str] = field(default_factory=list)
    attendance_category: str | None = None
    discharge_destination: str | None = None
    updated_at: datetime | None = None
    # read from the database (written back with an UPDATE) rather than new (an INSERT)
    stored: bool = False

    def facts(self) -> ContactFacts:
        return ContactFacts(
            contact_kind=ContactKind(self.contact_kind),
            planned=self.planned,
            status=ContactStatus(self.status),
            started_at=self.started_at,  # type: ignore[arg-type] (set on every stored contact)
            ended_at=self.ended_at,
            source_org=self.source_org,
            chief_complaint=self.chief_complaint,
            diagnosis_codes=tuple(self.diagnosis_codes),
            attendance_category=self.attendance_category,
            discharge_destination=self.discharge_destination,
        )

    def apply(self, facts: ContactFacts, now: datetime) -> None:
        """The facts of a new revision."""
        self.contact_kind = facts.contact_kind.value
        self.planned = facts.planned
        self.status = facts.status.value
        self.started_at = facts.started_at
        self.ended_at = facts.ended_at
        self.source_org = facts.source_org
        self.chief_complaint = facts.chief_complaint
        self.diagnosis_codes = list(facts.diagnosis_codes)
        self.attendance_category = facts.attendance_category
        self.discharge_destination = facts.discharge_destination
        self.revision += 1
        self.updated_at = now


@dataclass(slots=True)
class Logged:
    """A message log row (inbound_message): what was answered to a control id, and why."""

    source_system: str
    control_id: str
    outcome: str = ""
    digest: str = ""
    channel: str = ""
    ack_code: str = ""
    detail: str | None = None
    received_at: datetime | None = None


@dataclass
class Writes:
    """Everything a batch writes but its dead letters and aliases (rare; written after this,
    applying.apply_in)."""

    contacts: dict[uuid.UUID, Contact] = field(default_factory=dict)
    logged: dict[tuple[str, str], Logged] = field(default_factory=dict)
    events: list[CloudEvent] = field(default_factory=list)
    audits: list[tuple[tuple[str, str, str], str, str, str]] = field(default_factory=list)
    # (actor, org, roles) of each source, worked out once a batch
    actors: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def contact(self, row: Contact, event: CloudEvent) -> None:
        self.contacts[row.id] = row
        self.events.append(event)

    def log(self, row: Logged) -> None:
        self.logged[(row.source_system, row.control_id)] = row

    def audit(self, principal: Principal, row: Contact, channel: str) -> None:
        """The audit entry of a contact recorded by a message of `channel` (the row
        `record_audit` wrote for it)."""
        actor = self.actors.get(principal.user)
        if actor is None:
            roles = ",".join(sorted(r.value for r in principal.roles))
            actor = self.actors[principal.user] = (principal.identity, principal.org, roles)
        detail = f"{channel} revision {row.revision}"
        self.audits.append((actor, str(row.id), row.patient_id, detail))

    def params(self, topic: str) -> dict[str, Any]:
        """The parameters of repository.write_batch's statement: a column array each."""
        contacts = list(self.contacts.values())
        logged = list(self.logged.values())
        # one trace context for the batch: its rows are all written in this task's span
        span = trace.get_current_span().get_span_context()
        return {
            "c_id": [c.id for c in contacts],
            "c_stored": [c.stored for c in contacts],
            "c_source_system": [c.source_system for c in contacts],
            "c_source_ref": [c.source_ref for c in contacts],
            "c_patient_id": [c.patient_id for c in contacts],
            "c_revision": [c.revision for c in contacts],
            "c_contact_kind": [c.contact_kind for c in contacts],
            "c_planned": [c.planned for c in contacts],
            "c_status": [c.status for c in contacts],
            "c_started_at": [c.started_at for c in contacts],
            "c_ended_at": [c.ended_at for c in contacts],
            "c_source_org": [c.source_org for c in contacts],
            "c_chief_complaint": [c.chief_complaint for c in contacts],
            "c_diagnosis_codes": [orjson.dumps(c.diagnosis_codes).decode() for c in contacts],
            "c_attendance_category": [c.attendance_category for c in contacts],
            "c_discharge_destination": [c.discharge_destination for c in contacts],
            "c_channel": [c.channel for c in contacts],
            "c_updated_at": [c.updated_at for c in contacts],
            "m_source_system": [m.source_system for m in logged],
            "m_control_id": [m.control_id for m in logged],
            "m_channel": [m.channel for m in logged],
            "m_received_at": [m.received_at for m in logged],
            "m_outcome": [m.outcome for m in logged],
            "m_ack_code": [m.ack_code for m in logged],
            "m_detail": [m.detail for m in logged],
            "m_digest": [m.digest for m in logged],
            "topic": topic,
            "traceparent": current_traceparent(),
            "o_event_id": [e.id for e in self.events],
            "o_key": [e.subject for e in self.events],
            "o_event_type": [e.type for e in self.events],
            "o_payload": [orjson.dumps(e.model_dump(mode="json")).decode() for e in self.events],
            "a_actor": [a[0][0] for a in self.audits],
            "a_actor_org": [a[0][1] for a in self.audits],
            "a_actor_roles": [a[0][2] for a in self.audits],
            "a_resource_id": [a[1] for a in self.audits],
            "a_patient_id": [a[2] for a in self.audits],
            "a_detail": [a[3] for a in self.audits],
            "trace_id": format(span.trace_id, "032x") if span.is_valid else None,
        }

    def empty(self) -> bool:
        return not (self.contacts or self.logged)
