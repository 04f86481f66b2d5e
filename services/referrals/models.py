"""The referrals service's tables (schema `referrals`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, Boolean, Column, DateTime, Index, Integer, Text, func, text
from sqlmodel import Field, SQLModel


class Referral(SQLModel, table=True):
    __tablename__ = "referral"
    __table_args__ = (
        Index("ix_referral_patient", "patient_id"),
        Index("ix_referral_to_org_state", "to_org", "state"),
        Index(
            "ux_referral_source",
            "source_system",
            "source_ref",
            unique=True,
            postgresql_where=text("source_system IS NOT NULL"),
        ),
    )

    id: str = Field(sa_column=Column(Text, primary_key=True))
    patient_id: str = Field(sa_column=Column(Text, nullable=False))  # pseudonymous
    # personal details: stored only here, never in events or logs. A referral imported from
    # an EHR's history, or sent as a standard ServiceRequest naming the person by NHS number
    # only, holds no name or birth date (None: not given, never guessed)
    nhs_number: str = Field(sa_column=Column(Text, nullable=False))
    given_name: str | None = Field(default=None, sa_column=Column(Text))
    family_name: str | None = Field(default=None, sa_column=Column(Text))
    birth_date: str | None = Field(default=None, sa_column=Column(Text))
    ics: str = Field(sa_column=Column(Text, nullable=False))
    from_org: str = Field(sa_column=Column(Text, nullable=False))
    from_practitioner: str | None = Field(default=None, sa_column=Column(Text))
    # the person's registered GP practice (ODS code), when the referrer gave it
    registered_practice: str | None = Field(default=None, sa_column=Column(Text))
    source: str = Field(sa_column=Column(Text, nullable=False))
    to_org: str = Field(sa_column=Column(Text, nullable=False))
    # None: an imported referral to a service the directory does not list (to_org and
    # service_category still say where it went); never a made-up directory id
    to_service_id: str | None = Field(default=None, sa_column=Column(Text))
    service_category: str = Field(sa_column=Column(Text, nullable=False))
    reason_codes: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    clinical_summary: str | None = Field(default=None, sa_column=Column(Text))
    priority: str = Field(sa_column=Column(Text, nullable=False))
    consent_to_referral: bool = Field(sa_column=Column(Boolean, nullable=False))
    # explicit: the referrer recorded the person's consent; implied: a referral for direct
    # care (a standard ServiceRequest without Waymark's consent extension, or an import)
    consent_basis: str = Field(
        default="explicit", sa_column=Column(Text, nullable=False, server_default="explicit")
    )
    consent_to_carer_sharing: bool = Field(sa_column=Column(Boolean, nullable=False))
    communication_needs: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    referred_from: str | None = Field(default=None, sa_column=Column(Text))
    state: str = Field(sa_column=Column(Text, nullable=False))
    # the state a referral on hold returns to when it is resumed
    held_from: str | None = Field(default=None, sa_column=Column(Text))
    appointment_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    submitted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # raised for the referrer, e.g. "service_withdrawn" when the directory withdraws the service
    # a referral imported from a source system's history: that system's id and its own
    # referral id (e.g. an e-RS UBRN); unique together
    source_system: str | None = Field(default=None, sa_column=Column(Text))
    source_ref: str | None = Field(default=None, sa_column=Column(Text))
    flags: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    version: int = Field(sa_column=Column(Integer, nullable=False))
    created_by: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )
    updated_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )


class ReferralTransition(SQLModel, table=True):
    """Append-only history: who moved the referral to which state, when and why."""

    __tablename__ = "referral_transition"

    id: int | None = Field(default=None, primary_key=True)
    referral_id: str = Field(sa_column=Column(Text, nullable=False, index=True))
    from_state: str | None = Field(default=None, sa_column=Column(Text))
    to_state: str = Field(sa_column=Column(Text, nullable=False))
    actor: str = Field(sa_column=Column(Text, nullable=False))
    actor_org: str = Field(sa_column=Column(Text, nullable=False))
    reason_code: str | None = Field(default=None, sa_column=Column(Text))
    # free-text advice to the referrer (returns) or notes; stays in this service
    note: str | None = Field(default=None, sa_column=Column(Text))
    # the appointment a `booked` step made
    appointment_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # the step came from a source system's history (the historical import)
    imported: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default="false")
    )
    event_id: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )


class DirectoryService(SQLModel, table=True):
    """This service's copy of what it needs from the directory, kept by consuming
    `waymark.directory.v1`: which services exist, who runs them, whether they take referrals."""

    __tablename__ = "directory_service"

    service_id: str = Field(sa_column=Column(Text, primary_key=True))
    org_code: str = Field(sa_column=Column(Text, nullable=False))
    category: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(Text, nullable=False))
    self_referral: bool = Field(sa_column=Column(Boolean, nullable=False))
    # the time of the directory event applied last; an older event never overwrites a newer
    as_of: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
