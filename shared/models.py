"""Tables every service has in its own schema: the outbox, the consumer inbox and the
audit log. They are created by each service's first migration (see shared/migration_pieces.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Integer, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class OutboxMessage(SQLModel, table=True):
    """An event waiting to be published, written in the same transaction as the change."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unsent", "seq", postgresql_where=text("sent_at IS NULL")),)

    # seq orders publication: a patient's events leave in the order they were written
    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    event_id: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    topic: str = Field(sa_column=Column(Text, nullable=False))
    key: str = Field(sa_column=Column(Text, nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    traceparent: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # a row that keeps failing to publish is parked: it and later rows of its key wait for an
    # operator, everything else flows (platform v2)
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    parked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ProcessedEvent(SQLModel, table=True):
    """The inbox: (consumer, event id) recorded in the same transaction as the effect, so a
    redelivered event is recognised and skipped."""

    __tablename__ = "inbox"

    consumer: str = Field(sa_column=Column(Text, primary_key=True))
    event_id: str = Field(sa_column=Column(Text, primary_key=True))
    topic: str = Field(sa_column=Column(Text, nullable=False))
    processed_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )


class AuditEntry(SQLModel, table=True):
    """Who read or changed which patient record, when, from where. Append-only."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_patient", "patient_id", "at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )
    actor: str = Field(sa_column=Column(Text, nullable=False))
    actor_org: str = Field(sa_column=Column(Text, nullable=False))
    actor_roles: str = Field(sa_column=Column(Text, nullable=False))
    action: str = Field(sa_column=Column(Text, nullable=False))  # read | create | update | ...
    resource_type: str = Field(sa_column=Column(Text, nullable=False))
    resource_id: str | None = Field(default=None, sa_column=Column(Text))
    patient_id: str | None = Field(default=None, sa_column=Column(Text))
    client_ip: str | None = Field(default=None, sa_column=Column(Text))
    trace_id: str | None = Field(default=None, sa_column=Column(Text))
    detail: str | None = Field(default=None, sa_column=Column(Text))
