"""The care plans service's tables (schema `care_plans`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Boolean, Column, DateTime, Integer, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class CarePlan(SQLModel, table=True):
    """One plan per person; its content lives in immutable versions."""

    __tablename__ = "care_plan"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    patient_id: str = Field(sa_column=Column(Text, nullable=False, unique=True))  # pseudonym
    # personal detail: stored only here, never in events or logs
    nhs_number: str = Field(sa_column=Column(Text, nullable=False))
    ics: str = Field(sa_column=Column(Text, nullable=False))
    holder_org: str = Field(sa_column=Column(Text, nullable=False))
    # the current version's consent, kept here so every read checks it without the document
    consented_orgs: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    current_version: int = Field(sa_column=Column(Integer, nullable=False))
    created_by: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )
    updated_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )


class CarePlanVersion(SQLModel, table=True):
    """An immutable version: the whole document, who made it, when and why. The database
    refuses updates and deletes."""

    __tablename__ = "care_plan_version"

    plan_id: str = Field(sa_column=Column(Text, primary_key=True))
    version: int = Field(sa_column=Column(Integer, primary_key=True))
    content: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    consented_orgs: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    author: str = Field(sa_column=Column(Text, nullable=False))
    author_org: str = Field(sa_column=Column(Text, nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )


class Assessment(SQLModel, table=True):
    """A scored screening questionnaire; the answers are kept as a FHIR QuestionnaireResponse
    and never leave the service in events."""

    __tablename__ = "assessment"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    plan_id: str = Field(sa_column=Column(Text, nullable=False))
    patient_id: str = Field(sa_column=Column(Text, nullable=False))
    instrument: str = Field(sa_column=Column(Text, nullable=False))
    total: int = Field(sa_column=Column(Integer, nullable=False))
    band: str = Field(sa_column=Column(Text, nullable=False))
    subscale: int | None = Field(default=None, sa_column=Column(Integer))
    safety_flag: bool = Field(sa_column=Column(Boolean, nullable=False))
    risk_flags: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    questionnaire_response: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    authored: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    recorded_by: str = Field(sa_column=Column(Text, nullable=False))
    recorded_org: str = Field(sa_column=Column(Text, nullable=False))
    recorded_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )


class TimelineEntry(SQLModel, table=True):
    """A step of a person's referral journey, from `waymark.referrals.v1`. Keyed by the
    person's pseudonym, so the journey shows even if the plan is made after the referral."""

    __tablename__ = "timeline_entry"

    event_id: str = Field(sa_column=Column(Text, primary_key=True))
    patient_id: str = Field(sa_column=Column(Text, nullable=False))
    referral_id: str = Field(sa_column=Column(Text, nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(sa_column=Column(Text, nullable=False))
    previous_state: str | None = Field(default=None, sa_column=Column(Text))
    from_org: str = Field(sa_column=Column(Text, nullable=False))
    to_org: str = Field(sa_column=Column(Text, nullable=False))
    to_service_id: str = Field(sa_column=Column(Text, nullable=False))
    service_category: str = Field(sa_column=Column(Text, nullable=False))
    transition_reason: str | None = Field(default=None, sa_column=Column(Text))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class RegisteredPractice(SQLModel, table=True):
    """The person's registered GP practice as the latest referral event gave it: a care
    relationship the service can show."""

    __tablename__ = "registered_practice"

    patient_id: str = Field(sa_column=Column(Text, primary_key=True))
    org: str = Field(sa_column=Column(Text, nullable=False))
    as_of: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    event_id: str = Field(sa_column=Column(Text, nullable=False))


class BreakGlassGrant(SQLModel, table=True):
    """An emergency read of one plan by one user: a stated reason, a time limit, audited and
    reported to the ICS's information governance lead."""

    __tablename__ = "break_glass_grant"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    plan_id: str = Field(sa_column=Column(Text, nullable=False))
    patient_id: str = Field(sa_column=Column(Text, nullable=False))
    user_identity: str = Field(sa_column=Column(Text, nullable=False))
    org: str = Field(sa_column=Column(Text, nullable=False))
    reason_code: str = Field(sa_column=Column(Text, nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    granted_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
