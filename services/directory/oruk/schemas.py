"""The Open Referral UK (HSDS 3) shapes: the bodies of the ORUK read API (`/oruk`) and of the
importer (`/imports/oruk`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.directory import domain, search
from services.directory.domain import ServiceStatus, Weekday
from services.directory.fields import (
    Age,
    Clock,
    Email,
    LanguageCode,
    Name,
    RecordId,
    Short,
    ShortOrUnknown,
    Text,
    Url,
)

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
    address_1: ShortOrUnknown | None = None
    address_2: Short | None = None
    city: ShortOrUnknown | None = None
    region: Short | None = None
    state_province: ShortOrUnknown | None = None
    postal_code: Short
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    address_type: Literal["physical", "postal", "virtual"] = "physical"

    @field_validator("address_1", "city", "state_province", mode="before")
    @classmethod
    def _unknown(cls, v: Any) -> Any:
        # the profile requires these; a feed (Waymark's own) sends "" for "not known"
        return None if v == "" else v


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
