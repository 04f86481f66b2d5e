"""The integration service's request and response bodies (operations: sources, status, dead
letters). The channels' own bodies are HL7 v2 messages and FHIR resources."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.identifiers import ORG_CODE_PATTERN

SOURCE_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"


class SourceIn(BaseModel):
    """A system that sends to Waymark: a PAS or ED system (HL7 v2, by its MSH-4 sending
    facility), a shared care record (FHIR, by its client id), or a bulk extract's origin."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=SOURCE_ID, description="Waymark's name for it, e.g. rx1-pas")
    name: str = Field(min_length=1, max_length=200)
    org_code: str = Field(pattern=ORG_CODE_PATTERN, description="its organisation's ODS code")
    channel: Literal["hl7v2", "fhir", "bulk"]
    sending_facility: str | None = Field(
        default=None, max_length=180, pattern=r"^[^|^~\\&\r\n]+$", description="HL7 v2 MSH-4"
    )
    client_id: str | None = Field(default=None, max_length=200, description="FHIR: token sub")
    active: bool = True


class SourceOut(SourceIn):
    created_at: datetime
    updated_at: datetime


class SourceStatus(BaseModel):
    id: str
    name: str
    org_code: str
    channel: str
    active: bool
    received: int
    accepted: int
    refused: int
    last_seen: datetime | None
    dead_letters: int = Field(description="open dead letters of this source")


class StatusOut(BaseModel):
    sources: list[SourceStatus]
    unknown_sender_dead_letters: int


class DeadLetterOut(BaseModel):
    """A message that could not be applied. Its content is never listed (it may hold
    identifiers): an operator re-drives or discards it by id."""

    id: str
    source_system: str | None
    channel: str
    control_id: str | None
    received_at: datetime
    reason: str
    attempts: int


class RedriveOut(BaseModel):
    ack_code: Literal["AA", "AE", "AR"]
    detail: str | None
    contacts_changed: int
