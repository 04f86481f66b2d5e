"""Request and response bodies of Waymark's own directory API (organisations, services, search,
postcodes, vocabularies). The Open Referral UK shapes are in `oruk/schemas.py`."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.directory import domain
from services.directory.domain import (
    Category,
    CommunicationSupport,
    Condition,
    DeliveryMode,
    LocationType,
    ServiceStatus,
    Weekday,
    WithdrawalReason,
)
from services.directory.fields import (
    Age,
    Email,
    LanguageCode,
    Name,
    OrgCode,
    RecordId,
    Short,
    Text,
    Url,
    unique,
)


class OrganizationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Text = ""
    email: Email | None = None
    website: Url | None = None


class OrganizationOut(BaseModel):
    id: str
    org_code: str
    ics: str
    name: str
    description: str
    email: str | None
    website: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class LocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: RecordId | None = None
    location_type: LocationType = LocationType.PHYSICAL
    name: Short | None = None
    description: Text | None = None
    address_1: Short | None = None
    city: Short | None = None
    # the county (or the ICS's area) the address is in: ORUK's required `state_province`
    county: Short | None = None
    postcode: Annotated[str, StringConstraints(max_length=12)] | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _place(self) -> LocationIn:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both latitude and longitude, or neither")
        if self.postcode is not None:
            self.postcode = domain.normalise_postcode(self.postcode)
        if (
            self.location_type is LocationType.PHYSICAL
            and self.latitude is None
            and self.postcode is None
        ):
            raise ValueError("a physical location needs latitude and longitude or a postcode")
        return self


class LocationOut(BaseModel):
    id: str
    location_type: str | None
    name: str | None
    description: str | None
    address_1: str | None
    city: str | None
    county: str | None = None
    postcode: str | None
    latitude: float | None
    longitude: float | None


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    byday: list[Weekday] = Field(min_length=1, max_length=7)
    opens_at: time | None = None
    closes_at: time | None = None
    description: Text | None = None
    valid_from: date | None = None
    valid_to: date | None = None

    _unique = field_validator("byday")(unique)

    @model_validator(mode="after")
    def _times(self) -> ScheduleIn:
        if (self.opens_at is None) != (self.closes_at is None):
            raise ValueError("give opens_at and closes_at together")
        if self.opens_at is not None and (
            self.opens_at.tzinfo is not None or self.closes_at.tzinfo is not None
        ):  # type: ignore[union-attr]
            raise ValueError("opening times are UK local time, without an offset")
        if self.valid_from and self.valid_to and self.valid_from > self.valid_to:
            raise ValueError("valid_from is after valid_to")
        return self


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Short | None = None
    title: Short | None = None
    email: Email | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ()-]{6,20}$")] | None = None


class CostOptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    option: Short | None = None
    amount: float = Field(ge=0, le=1_000_000)
    amount_description: Short | None = None


class LanguageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Short
    code: LanguageCode | None = None


class ServiceAreaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Short
    description: Text | None = None


class _ServiceFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    alternate_name: Short | None = None
    description: Text = ""
    url: Url | None = None
    email: Email | None = None
    status: ServiceStatus = ServiceStatus.ACTIVE
    category: Category
    conditions: list[Condition] = Field(min_length=1, max_length=len(Condition))
    self_referral: bool = False
    delivery_modes: list[DeliveryMode] = Field(min_length=1, max_length=len(DeliveryMode))
    communication_support: list[CommunicationSupport] = Field(
        default_factory=list, max_length=len(CommunicationSupport)
    )
    waiting_weeks: int | None = Field(default=None, ge=0, le=520)
    how_to_refer: Text | None = None
    eligibility_description: Text | None = None
    minimum_age: Age | None = None
    maximum_age: Age | None = None
    fees_description: Text | None = None
    alert: Text | None = None
    cost_options: list[CostOptionIn] = Field(default_factory=list, max_length=20)
    languages: list[LanguageIn] = Field(default_factory=list, max_length=50)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=20)
    locations: list[LocationIn] = Field(default_factory=list, max_length=50)
    schedules: list[ScheduleIn] = Field(default_factory=list, max_length=50)
    service_areas: list[ServiceAreaIn] = Field(default_factory=list, max_length=50)

    _unique = field_validator("conditions", "delivery_modes", "communication_support")(unique)

    @model_validator(mode="after")
    def _consistent(self) -> _ServiceFields:
        domain.check_ages(self.minimum_age, self.maximum_age)
        ids = [loc.id for loc in self.locations if loc.id is not None]
        if len(set(ids)) != len(ids):
            raise ValueError("locations: each id may appear once")
        return self


class ServiceCreate(_ServiceFields):
    """A new service, created as a draft. `id` is yours to choose (a slug such as
    `svc-msk-physio`); without one the directory makes a UUID."""

    id: RecordId | None = None
    # the provider organisation; defaults to yours (admins may name another in their ICS)
    org_code: OrgCode | None = None


class ServiceUpdate(BaseModel):
    """Fields to change; a list given replaces the whole list."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    alternate_name: Short | None = None
    description: Text | None = None
    url: Url | None = None
    email: Email | None = None
    status: ServiceStatus | None = None
    category: Category | None = None
    conditions: list[Condition] | None = Field(
        default=None, min_length=1, max_length=len(Condition)
    )
    self_referral: bool | None = None
    delivery_modes: list[DeliveryMode] | None = Field(
        default=None, min_length=1, max_length=len(DeliveryMode)
    )
    communication_support: list[CommunicationSupport] | None = Field(
        default=None, max_length=len(CommunicationSupport)
    )
    waiting_weeks: int | None = Field(default=None, ge=0, le=520)
    how_to_refer: Text | None = None
    eligibility_description: Text | None = None
    minimum_age: Age | None = None
    maximum_age: Age | None = None
    fees_description: Text | None = None
    alert: Text | None = None
    cost_options: list[CostOptionIn] | None = Field(default=None, max_length=20)
    languages: list[LanguageIn] | None = Field(default=None, max_length=50)
    contacts: list[ContactIn] | None = Field(default=None, max_length=20)
    locations: list[LocationIn] | None = Field(default=None, max_length=50)
    schedules: list[ScheduleIn] | None = Field(default=None, max_length=50)
    service_areas: list[ServiceAreaIn] | None = Field(default=None, max_length=50)

    @field_validator("conditions", "delivery_modes", "communication_support")
    @classmethod
    def _unique_lists(cls, v: list[Any] | None) -> list[Any] | None:
        return None if v is None else unique(v)

    @model_validator(mode="after")
    def _required_stay(self) -> ServiceUpdate:
        for name in (
            "name",
            "status",
            "category",
            "conditions",
            "self_referral",
            "delivery_modes",
            "communication_support",
            "cost_options",
            "languages",
            "contacts",
            "locations",
            "schedules",
            "service_areas",
            "description",
        ):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: WithdrawalReason
    # for people reading the directory; kept out of events
    note: Text | None = None


class ScheduleOut(BaseModel):
    id: str
    byday: list[str]
    opens_at: str | None
    closes_at: str | None
    description: str | None
    valid_from: date | None
    valid_to: date | None


class ContactOut(BaseModel):
    id: str
    name: str | None
    title: str | None
    email: str | None
    phone: str | None


class CostOptionOut(BaseModel):
    id: str
    option: str | None
    amount: float | None
    amount_description: str | None


class LanguageOut(BaseModel):
    id: str
    name: str | None
    code: str | None


class ServiceAreaOut(BaseModel):
    id: str
    name: str | None
    description: str | None


class ServiceOut(BaseModel):
    id: str
    org_code: str
    organization_id: str
    organization_name: str
    name: str
    alternate_name: str | None
    description: str
    url: str | None
    email: str | None
    status: ServiceStatus
    lifecycle: str
    category: Category
    conditions: list[Condition]
    self_referral: bool
    delivery_modes: list[DeliveryMode]
    communication_support: list[CommunicationSupport]
    waiting_weeks: int | None
    how_to_refer: str | None
    eligibility_description: str | None
    minimum_age: int | None
    maximum_age: int | None
    fees_description: str | None
    free_of_charge: bool
    alert: str | None
    cost_options: list[CostOptionOut]
    languages: list[LanguageOut]
    contacts: list[ContactOut]
    locations: list[LocationOut]
    schedules: list[ScheduleOut]
    service_areas: list[ServiceAreaOut]
    withdrawal_reason: WithdrawalReason | None
    withdrawal_note: str | None
    published_at: datetime | None
    withdrawn_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class SearchHit(BaseModel):
    id: str
    name: str
    description: str
    org_code: str
    organization_name: str
    category: Category
    conditions: list[Condition]
    status: ServiceStatus
    self_referral: bool
    delivery_modes: list[DeliveryMode]
    communication_support: list[CommunicationSupport]
    waiting_weeks: int | None
    free_of_charge: bool
    minimum_age: int | None
    maximum_age: int | None
    how_to_refer: str | None
    # the nearest of the service's locations inside the radius (when searching near a place)
    distance_km: float | None
    nearest_location: LocationOut | None
    # relevance: how many of the searched words the service matches, plus a 0-1 text rank
    score: float | None


class SearchOrigin(BaseModel):
    latitude: float
    longitude: float
    postcode: str | None
    radius_km: float


class SearchPage(BaseModel):
    total_items: int
    total_pages: int
    page: int
    page_size: int
    sort: str
    origin: SearchOrigin | None
    results: list[SearchHit]


class PostcodeOut(BaseModel):
    postcode: str
    latitude: float
    longitude: float
    place: str


class VocabularyTerm(BaseModel):
    code: str
    name: str
    description: str
    taxonomy_term_id: str


class Vocabularies(BaseModel):
    categories: list[VocabularyTerm]
    conditions: list[VocabularyTerm]
    delivery_modes: list[VocabularyTerm]
    communication_support: list[VocabularyTerm]
