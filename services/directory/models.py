"""The directory's tables (schema `directory`), shaped on Open Referral UK / HSDS 3.

A service's nested value objects that nobody queries on their own (contacts, phones,
schedules, service areas, cost options, languages, funding) are kept as JSONB on the service,
verbatim in their ORUK shape with their ids, so an ORUK import comes back out unchanged.
Locations, service_at_location links, taxonomy terms and attributes are tables: search joins
them. Columns the database computes (`service.search_vector`, `service.opening`,
`location.geo`) are written and read only by the repository's SQL, not mapped here.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ARRAY, Boolean, Column, Date, DateTime, Float, Integer, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _text(**kw: Any) -> Any:
    return Field(default=None, sa_column=Column(Text, **kw))


def _json() -> Any:
    return Field(default_factory=list, sa_column=Column(JSONB, nullable=False))


class Postcode(SQLModel, table=True):
    """The postcode table the project loads (synthetic for the demo ICS; see data/)."""

    __tablename__ = "postcode"

    postcode: str = Field(sa_column=Column(Text, primary_key=True))
    latitude: float = Field(sa_column=Column(Float, nullable=False))
    longitude: float = Field(sa_column=Column(Float, nullable=False))
    place: str = Field(sa_column=Column(Text, nullable=False))


class Organization(SQLModel, table=True):
    __tablename__ = "organization"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    org_code: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    ics: str = Field(sa_column=Column(Text, nullable=False))
    name: str = Field(sa_column=Column(Text, nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    email: str | None = _text()
    website: str | None = _text()
    logo: str | None = _text()
    uri: str | None = _text()
    identifiers: list[dict[str, Any]] = _json()
    version: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Service(SQLModel, table=True):
    __tablename__ = "service"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    organization_id: str = Field(sa_column=Column(Text, nullable=False))
    org_code: str = Field(sa_column=Column(Text, nullable=False))
    name: str = Field(sa_column=Column(Text, nullable=False))
    alternate_name: str | None = _text()
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    url: str | None = _text()
    email: str | None = _text()
    status: str = Field(sa_column=Column(Text, nullable=False))
    interpretation_services: str | None = _text()
    application_process: str | None = _text()  # Waymark: how to refer
    fees_description: str | None = _text()
    accreditations: str | None = _text()
    eligibility_description: str | None = _text()
    minimum_age: int | None = Field(default=None, sa_column=Column(Integer))
    maximum_age: int | None = Field(default=None, sa_column=Column(Integer))
    assured_date: date | None = Field(default=None, sa_column=Column(Date))
    assurer_email: str | None = _text()
    alert: str | None = _text()
    phones: list[dict[str, Any]] = _json()
    contacts: list[dict[str, Any]] = _json()
    schedules: list[dict[str, Any]] = _json()
    service_areas: list[dict[str, Any]] = _json()
    cost_options: list[dict[str, Any]] = _json()
    languages: list[dict[str, Any]] = _json()
    funding: list[dict[str, Any]] = _json()
    # Waymark's facts (derived from the attributes on every save)
    category: str = Field(sa_column=Column(Text, nullable=False))
    conditions: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    delivery_modes: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    communication_support: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    self_referral: bool = Field(sa_column=Column(Boolean, nullable=False))
    waiting_weeks: int | None = Field(default=None, sa_column=Column(Integer))
    remote: bool = Field(sa_column=Column(Boolean, nullable=False))
    free_of_charge: bool = Field(sa_column=Column(Boolean, nullable=False))
    # publication
    lifecycle: str = Field(sa_column=Column(Text, nullable=False))
    withdrawal_reason: str | None = _text()
    withdrawal_note: str | None = _text()
    published_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    withdrawn_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    created_by: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Location(SQLModel, table=True):
    """A place (or a virtual location) of an organisation; services link to it."""

    __tablename__ = "location"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    organization_id: str = Field(sa_column=Column(Text, nullable=False))
    location_type: str | None = _text()
    name: str | None = _text()
    alternate_name: str | None = _text()
    description: str | None = _text()
    url: str | None = _text()
    transportation: str | None = _text()
    latitude: float | None = Field(default=None, sa_column=Column(Float))
    longitude: float | None = Field(default=None, sa_column=Column(Float))
    external_identifier: str | None = _text()
    external_identifier_type: str | None = _text()
    postcode: str | None = _text()  # normalised, from the first address
    addresses: list[dict[str, Any]] = _json()
    accessibility: list[dict[str, Any]] = _json()


class ServiceAtLocation(SQLModel, table=True):
    __tablename__ = "service_at_location"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    service_id: str = Field(sa_column=Column(Text, nullable=False))
    location_id: str = Field(sa_column=Column(Text, nullable=False))
    description: str | None = _text()
    position: int = Field(sa_column=Column(Integer, nullable=False))


class Taxonomy(SQLModel, table=True):
    __tablename__ = "taxonomy"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    name: str = Field(sa_column=Column(Text, nullable=False))
    description: str = Field(sa_column=Column(Text, nullable=False))
    uri: str | None = _text()
    version: str | None = _text()
    waymark: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))


class TaxonomyTerm(SQLModel, table=True):
    __tablename__ = "taxonomy_term"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    code: str | None = _text()
    name: str = Field(sa_column=Column(Text, nullable=False))
    description: str | None = _text()
    parent_id: str | None = _text()
    taxonomy: str | None = _text()
    taxonomy_id: str | None = _text()
    language: str | None = _text()
    term_uri: str | None = _text()
    waymark: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))


class Attribute(SQLModel, table=True):
    """HSDS 3 attribute: links a service to a taxonomy term, optionally with a value."""

    __tablename__ = "attribute"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    service_id: str = Field(sa_column=Column(Text, nullable=False))
    taxonomy_term_id: str = Field(sa_column=Column(Text, nullable=False))
    link_type: str | None = _text()
    value: str | None = _text()
    position: int = Field(sa_column=Column(Integer, nullable=False))


class ServiceIdentifier(SQLModel, table=True):
    """An identifier another system uses for a service (an e-RS service id, a HealthcareService
    identifier of the ICS's shared care record): system + value, unique across the directory,
    so a referral naming the service that way maps to exactly one directory service."""

    __tablename__ = "service_identifier"

    system: str = Field(sa_column=Column(Text, primary_key=True))
    value: str = Field(sa_column=Column(Text, primary_key=True))
    service_id: str = Field(sa_column=Column(Text, nullable=False, index=True))
