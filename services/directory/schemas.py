"""Request and response bodies of the directory API: Waymark's own (create, update, search)
and the Open Referral UK (HSDS 3) shapes used by the ORUK read API and the importer."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.directory import domain, search
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

# printable text: no NUL or other control characters (tab and newlines allowed)
_CONTROL = set(chr(c) for c in range(32) if chr(c) not in "\t\n\r") | {"\x7f"}


def _clean(v: str) -> str:
    if any(ch in _CONTROL for ch in v):
        raise ValueError("must not contain control characters such as NUL")
    return v


Text = Annotated[str, StringConstraints(max_length=10000), AfterValidator(_clean)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=300), AfterValidator(_clean)]
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    AfterValidator(_clean),
]
RecordId = Annotated[str, StringConstraints(pattern=domain.RECORD_ID)]
OrgCode = Annotated[str, StringConstraints(pattern=domain.ORG_CODE)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,60}$")]
Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2000}$")]
Clock = Annotated[str, StringConstraints(max_length=20)]
Age = Annotated[int, Field(ge=0, le=130)]
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("list each value once")
    return values


# === Open Referral UK (HSDS 3.0) =============================================================
# Fields Waymark does not model are ignored on import (and so absent on export).


class Oruk(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OrukPhone(Oruk):
    id: RecordId
    number: Short
    type: Short | None = None
    extension: Short | None = None
    description: Text | None = None


class OrukContact(Oruk):
    id: RecordId
    name: Short | None = None
    title: Short | None = None
    department: Short | None = None
    email: Email | None = None
    phones: list[OrukPhone] = Field(default_factory=list, max_length=20)


class OrukSchedule(Oruk):
    id: RecordId
    service_id: RecordId | None = None
    valid_from: date | None = None
    valid_to: date | None = None
    dtstart: date | None = None
    freq: Literal["WEEKLY", "MONTHLY"] | None = None
    interval: int | None = Field(default=None, ge=1, le=52)
    byday: Annotated[str, StringConstraints(max_length=60)] | None = None
    bymonthday: Annotated[str, StringConstraints(max_length=60)] | None = None
    description: Text | None = None
    opens_at: Clock | None = None
    closes_at: Clock | None = None
    schedule_link: Url | None = None
    attending_type: Short | None = None
    notes: Text | None = None

    @field_validator("opens_at", "closes_at")
    @classmethod
    def _clock(cls, v: str | None) -> str | None:
        if v is not None and domain.parse_clock(v) is None:
            raise ValueError("a time is HH:MM or HH:MM:SS, optionally with Z or an offset")
        return v

    @field_validator("byday")
    @classmethod
    def _days(cls, v: str | None) -> str | None:
        if v is None:
            return v
        for part in v.split(","):
            token = part.strip().upper().lstrip("+-0123456789")
            if token not in Weekday.__members__:
                raise ValueError(
                    "byday is comma-separated iCalendar days: MO,TU,WE,TH,FR,SA,SU "
                    "(optionally with an ordinal, e.g. 2MO)"
                )
        return v


class OrukServiceArea(Oruk):
    id: RecordId
    service_id: RecordId | None = None
    name: Short | None = None
    description: Text | None = None
    extent: Text | None = None
    extent_type: Short | None = None
    uri: Url | None = None


class OrukCostOption(Oruk):
    id: RecordId
    service_id: RecordId | None = None
    valid_from: date | None = None
    valid_to: date | None = None
    option: Short | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    amount: float | None = Field(default=None, ge=0, le=1_000_000)
    amount_description: Short | None = None


class OrukLanguage(Oruk):
    id: RecordId
    service_id: RecordId | None = None
    name: Short | None = None
    code: LanguageCode | None = None
    note: Text | None = None


class OrukFunding(Oruk):
    id: RecordId
    source: Text | None = None


class OrukAddress(Oruk):
    id: RecordId
    location_id: RecordId | None = None
    attention: Short | None = None
    address_1: Short | None = None
    address_2: Short | None = None
    city: Short | None = None
    region: Short | None = None
    state_province: Short | None = None
    postal_code: Short
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    address_type: Literal["physical", "postal", "virtual"] = "physical"


class OrukAccessibility(Oruk):
    id: RecordId
    location_id: RecordId | None = None
    description: Text | None = None
    details: Text | None = None
    url: Url | None = None


class OrukLocation(Oruk):
    id: RecordId
    location_type: Literal["physical", "postal", "virtual"] | None = None
    url: Url | None = None
    name: Short | None = None
    alternate_name: Short | None = None
    description: Text | None = None
    transportation: Text | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    external_identifier: Short | None = None
    external_identifier_type: Short | None = None
    addresses: list[OrukAddress] = Field(default_factory=list, max_length=10)
    accessibility: list[OrukAccessibility] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _both_coordinates(self) -> OrukLocation:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both latitude and longitude, or neither")
        return self

    @property
    def is_physical(self) -> bool:
        if self.location_type is None:
            return self.latitude is not None or bool(self.addresses)
        return self.location_type == "physical"


class OrukServiceSummary(Oruk):
    """The service as a service_at_location listing shows it."""

    id: RecordId
    organization_id: RecordId | None = None
    name: Short
    description: Text | None = None
    url: Url | None = None
    email: Email | None = None
    status: ServiceStatus


class OrukServiceAtLocation(Oruk):
    id: RecordId
    service_id: RecordId | None = None
    location_id: RecordId | None = None
    description: Text | None = None
    location: OrukLocation
    service: OrukServiceSummary | None = None
    # Waymark extension: metres from the searched point, when a search gave one
    distance: float | None = None


class OrukTaxonomy(Oruk):
    id: RecordId
    name: Short
    description: Text
    uri: Url | None = None
    version: Short | None = None


class OrukTaxonomyTerm(Oruk):
    id: RecordId
    code: Short | None = None
    name: Short
    description: Text | None = None
    parent_id: RecordId | None = None
    taxonomy: Short | None = None
    taxonomy_detail: OrukTaxonomy | None = None
    language: Short | None = None
    taxonomy_id: RecordId | None = None
    term_uri: Url | None = None


class OrukAttribute(Oruk):
    id: RecordId
    link_id: RecordId | None = None
    link_type: Short | None = None
    link_entity: Literal["service"] | None = None
    value: Short | None = None
    taxonomy_term_id: RecordId
    taxonomy_term: OrukTaxonomyTerm | None = None

    @model_validator(mode="after")
    def _same_term(self) -> OrukAttribute:
        if self.taxonomy_term is not None and self.taxonomy_term.id != self.taxonomy_term_id:
            raise ValueError("taxonomy_term.id differs from taxonomy_term_id")
        return self


class OrukOrganizationIdentifier(Oruk):
    id: RecordId
    identifier_scheme: Short | None = None
    identifier_type: Short
    identifier: Short


ODS_IDENTIFIER_TYPE = "ODS code"


class OrukOrganization(Oruk):
    id: RecordId
    name: Name
    description: Text = ""
    email: Email | None = None
    website: Url | None = None
    logo: Url | None = None
    uri: Url | None = None
    organization_identifiers: list[OrukOrganizationIdentifier] = Field(
        default_factory=list, max_length=20
    )

    def ods_code(self) -> str | None:
        """Waymark addresses referrals by ODS-style organisation code."""
        for ident in self.organization_identifiers:
            if (
                ident.identifier_type.lower() == ODS_IDENTIFIER_TYPE.lower()
                or (ident.identifier_scheme or "").upper() == "ODS"
            ):
                return ident.identifier
        return None


class OrukService(Oruk):
    """A fully nested HSDS 3 service, as `/oruk/services/{id}` returns and the importer takes."""

    id: RecordId
    organization_id: RecordId | None = None
    name: Name
    alternate_name: Short | None = None
    description: Text | None = None
    url: Url | None = None
    email: Email | None = None
    status: ServiceStatus
    interpretation_services: Text | None = None
    application_process: Text | None = None
    fees_description: Text | None = None
    accreditations: Text | None = None
    eligibility_description: Text | None = None
    minimum_age: Age | None = None
    maximum_age: Age | None = None
    assured_date: date | None = None
    assurer_email: Email | None = None
    alert: Text | None = None
    last_modified: datetime | None = None
    organization: OrukOrganization | None = None
    phones: list[OrukPhone] = Field(default_factory=list, max_length=20)
    schedules: list[OrukSchedule] = Field(default_factory=list, max_length=50)
    service_areas: list[OrukServiceArea] = Field(default_factory=list, max_length=50)
    service_at_locations: list[OrukServiceAtLocation] = Field(default_factory=list, max_length=100)
    languages: list[OrukLanguage] = Field(default_factory=list, max_length=50)
    funding: list[OrukFunding] = Field(default_factory=list, max_length=20)
    cost_options: list[OrukCostOption] = Field(default_factory=list, max_length=20)
    contacts: list[OrukContact] = Field(default_factory=list, max_length=50)
    attributes: list[OrukAttribute] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> OrukService:
        domain.check_ages(self.minimum_age, self.maximum_age)
        if (
            self.organization is not None
            and self.organization_id is not None
            and self.organization.id != self.organization_id
        ):
            raise ValueError("organization.id differs from organization_id")
        for group in (
            "schedules",
            "service_areas",
            "cost_options",
            "languages",
            "contacts",
            "attributes",
            "service_at_locations",
            "phones",
            "funding",
        ):
            ids = [item.id for item in getattr(self, group)]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{group}: each id may appear once")
        for group in ("schedules", "service_areas", "cost_options", "languages"):
            for item in getattr(self, group):
                if item.service_id is not None and item.service_id != self.id:
                    raise ValueError(
                        f"{group}: service_id {item.service_id} is not this service ({self.id})"
                    )
        for a in self.attributes:
            if a.link_id is not None and a.link_id != self.id:
                raise ValueError(f"attribute {a.id} links to {a.link_id}, not this service")
        for sal in self.service_at_locations:
            if sal.location_id is not None and sal.location_id != sal.location.id:
                raise ValueError(
                    f"service_at_location {sal.id}: location_id differs from location.id"
                )
        locations = [sal.location.id for sal in self.service_at_locations]
        if len(set(locations)) != len(locations):
            raise ValueError("service_at_locations: each location may appear once")
        return self


class Page(BaseModel):
    """ORUK's page envelope."""

    total_items: int
    total_pages: int
    page_number: int
    size: int
    first_page: bool
    last_page: bool
    empty: bool

    @classmethod
    def envelope(cls, *, total: int, page: int, per_page: int, size: int) -> dict[str, Any]:
        pages = search.last_page(total, per_page)
        return dict(
            total_items=total,
            total_pages=pages,
            page_number=page,
            size=size,
            first_page=page == 1,
            last_page=page >= pages,
            empty=total == 0,
        )


class OrukServicePage(Page):
    contents: list[OrukService]


class OrukServiceAtLocationPage(Page):
    contents: list[OrukServiceAtLocation]


class OrukTaxonomyPage(Page):
    contents: list[OrukTaxonomy]


class OrukTaxonomyTermPage(Page):
    contents: list[OrukTaxonomyTerm]


class OrukApiInfo(BaseModel):
    version: str
    profile: str
    openapi_url: str


# === the importer ============================================================================

MAX_IMPORT = 500


class ImportRequest(BaseModel):
    """An ORUK feed page (`contents`), or any object with the services in `contents`. Each
    record is validated on its own, so one bad record never stops the others."""

    model_config = ConfigDict(extra="ignore")

    contents: list[Any] = Field(max_length=MAX_IMPORT)


class ImportRejection(BaseModel):
    index: int
    id: str | None
    reasons: list[str]


class ImportReport(BaseModel):
    received: int
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    rejected: list[ImportRejection]


# === Waymark's own API ======================================================================


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

    _unique = field_validator("byday")(_unique)

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

    _unique = field_validator("conditions", "delivery_modes", "communication_support")(_unique)

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
        return None if v is None else _unique(v)

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
