"""The integration service's tables (schema `integration`). The DDL is migrations/0001."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Boolean, Column, DateTime, Integer, Text, func
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel


def _text(*, nullable: bool = True, **kw: Any) -> Any:
    return Field(default=None, sa_column=Column(Text, nullable=nullable, **kw))


def _time(*, nullable: bool = False) -> Any:
    default = None if nullable else func.now()
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, server_default=default),
    )


class SourceSystem(SQLModel, table=True):
    """A system registered to send: its organisation, channel and how it identifies itself."""

    __tablename__ = "source_system"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    name: str = Field(sa_column=Column(Text, nullable=False))
    org_code: str = Field(sa_column=Column(Text, nullable=False))
    channel: str = Field(sa_column=Column(Text, nullable=False))
    sending_facility: str | None = _text(unique=True)
    client_id: str | None = _text(unique=True)
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    created_at: datetime | None = _time()
    updated_at: datetime | None = _time()


class Encounter(SQLModel, table=True):
    """A contact with care. `source_ref` and nothing else here is the source's identifier."""

    __tablename__ = "encounter"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(UUID, primary_key=True))
    source_system: str = Field(sa_column=Column(Text, nullable=False))
    source_ref: str = Field(sa_column=Column(Text, nullable=False))
    patient_id: str = Field(sa_column=Column(Text, nullable=False))
    revision: int = Field(sa_column=Column(Integer, nullable=False))
    contact_kind: str = Field(sa_column=Column(Text, nullable=False))
    planned: bool = Field(sa_column=Column(Boolean, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ended_at: datetime | None = _time(nullable=True)
    source_org: str = Field(sa_column=Column(Text, nullable=False))
    chief_complaint: str | None = _text()
    diagnosis_codes: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False)
    )
    attendance_category: str | None = _text()
    discharge_destination: str | None = _text()
    channel: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime | None = _time()
    updated_at: datetime | None = _time()


class InboundMessage(SQLModel, table=True):
    """One message from a source, by its control id: what we answered and why."""

    __tablename__ = "inbound_message"

    source_system: str = Field(sa_column=Column(Text, primary_key=True))
    control_id: str = Field(sa_column=Column(Text, primary_key=True))
    channel: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime | None = _time()
    outcome: str = Field(sa_column=Column(Text, nullable=False))
    ack_code: str = Field(sa_column=Column(Text, nullable=False))
    detail: str | None = _text()
    digest: str = Field(sa_column=Column(Text, nullable=False))


class DeadLetter(SQLModel, table=True):
    """A message that could not be applied, kept for an operator to re-drive or discard."""

    __tablename__ = "dead_letter"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(UUID, primary_key=True))
    source_system: str | None = _text()
    channel: str = Field(sa_column=Column(Text, nullable=False))
    control_id: str | None = _text()
    received_at: datetime | None = _time()
    reason: str = Field(sa_column=Column(Text, nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="open", sa_column=Column(Text, nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    resolved_at: datetime | None = _time(nullable=True)
    resolved_by: str | None = _text()


class EncounterAlias(SQLModel, table=True):
    """Another source's id of a contact first reported by a different source (the same A&E
    attendance by the PAS's HL7 v2 feed and by the ECDS extract): one contact, counted once."""

    __tablename__ = "encounter_alias"

    source_system: str = Field(sa_column=Column(Text, primary_key=True))
    source_ref: str = Field(sa_column=Column(Text, primary_key=True))
    encounter_id: uuid.UUID = Field(sa_column=Column(UUID, nullable=False))
    created_at: datetime | None = _time()
