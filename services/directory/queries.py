"""The directory's reads in Waymark's shape: an organisation, a service (drafts only to those
who may manage them), a search, and where a postcode is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory import domain, search
from services.directory.access import may_manage
from services.directory.domain import Lifecycle
from services.directory.models import Location, Organization, Service
from services.directory.oruk.ids import is_uuid
from services.directory.oruk.repository import OrukRepository
from services.directory.repository import DirectoryRepository
from services.directory.schemas import (
    ContactOut,
    CostOptionOut,
    LanguageOut,
    LocationOut,
    ScheduleOut,
    SearchHit,
    SearchOrigin,
    SearchPage,
    ServiceAreaOut,
    ServiceOut,
)
from services.directory.search import Origin, SearchQuery
from shared.auth import Principal
from shared.errors import NotFound, ValidationFailed


async def get_organization(*, session: AsyncSession, org_code: str) -> Organization:
    org = await DirectoryRepository(session).organization_by_code(org_code)
    if org is None:
        raise NotFound(f"no organisation {org_code} in the directory")
    return org


async def get_service(
    *, session: AsyncSession, principal: Principal, service_id: str
) -> tuple[Service, Organization, list[Location]]:
    """A service in Waymark's shape. Drafts are visible only to those who may manage them."""
    repo = DirectoryRepository(session)
    service = await repo.service(service_id)
    if service is None and is_uuid(service_id):
        # the ORUK feed's UUID of a service made with a slug (oruk/ids.py) finds it here too
        stored = await OrukRepository(session).resolve("service", service_id)
        service = await repo.service(stored) if stored else None
    if service is None:
        raise NotFound(f"no service {service_id} in the directory")
    org = await repo.organization(service.organization_id)
    assert org is not None
    if service.lifecycle == Lifecycle.DRAFT and not may_manage(
        principal, org_code=org.org_code, org_ics=org.ics
    ):
        raise NotFound(f"no service {service_id} in the directory")
    return service, org, [loc for _, _, loc in await repo.links(service.id)]


async def resolve_origin(
    *, session: AsyncSession, postcode: str | None, latitude: float | None, longitude: float | None
) -> Origin | None:
    point = search.check_coordinates(latitude, longitude)
    if postcode is None:
        return point
    if point is not None:
        raise ValidationFailed("give a postcode or latitude and longitude, not both")
    normalised = domain.normalise_postcode(postcode)
    point = await DirectoryRepository(session).postcode_point(normalised)
    if point is None:
        raise ValidationFailed(
            f"postcode {normalised} is well-formed but not in the "
            "directory's postcode table for this area"
        )
    return Origin(point[0], point[1], normalised)


def _hit(r: Any) -> SearchHit:
    location = None
    if r["loc_id"] is not None:
        address = (r["loc_addresses"] or [{}])[0]
        location = LocationOut(
            id=r["loc_id"],
            location_type=r["loc_type"],
            name=r["loc_name"],
            description=r["loc_description"],
            address_1=address.get("address_1"),
            city=address.get("city"),
            postcode=r["loc_postcode"],
            latitude=r["loc_latitude"],
            longitude=r["loc_longitude"],
        )
    return SearchHit(
        id=r["id"],
        name=r["name"],
        description=r["description"],
        org_code=r["org_code"],
        organization_name=r["organization_name"],
        category=r["category"],
        conditions=r["conditions"],
        status=r["status"],
        self_referral=r["self_referral"],
        delivery_modes=r["delivery_modes"],
        communication_support=r["communication_support"],
        waiting_weeks=r["waiting_weeks"],
        free_of_charge=r["free_of_charge"],
        minimum_age=r["minimum_age"],
        maximum_age=r["maximum_age"],
        how_to_refer=r["application_process"],
        distance_km=None if r["distance_m"] is None else round(r["distance_m"] / 1000, 3),
        nearest_location=location,
        score=None if r["score"] is None else round(float(r["score"]), 6),
    )


async def search_services(*, session: AsyncSession, query: SearchQuery) -> SearchPage:
    rows, total = await DirectoryRepository(session).search(query)
    search.check_page_in_range(query.page, total, query.page_size)
    origin = None
    if query.origin is not None:
        origin = SearchOrigin(
            latitude=query.origin.latitude,
            longitude=query.origin.longitude,
            postcode=query.origin.postcode,
            radius_km=query.radius_km,
        )
    return SearchPage(
        total_items=total,
        total_pages=search.last_page(total, query.page_size),
        page=query.page,
        page_size=query.page_size,
        sort=query.sort.value,
        origin=origin,
        results=[_hit(r) for r in rows],
    )


def location_out(loc: Location) -> LocationOut:
    address = loc.addresses[0] if loc.addresses else {}
    return LocationOut(
        id=loc.id,
        location_type=loc.location_type,
        name=loc.name,
        description=loc.description,
        address_1=address.get("address_1"),
        city=address.get("city"),
        county=address.get("state_province"),
        postcode=loc.postcode,
        latitude=loc.latitude,
        longitude=loc.longitude,
    )


def service_out(row: Service, *, org: Organization, locations: Sequence[Location]) -> ServiceOut:
    def phone(c: dict[str, Any]) -> str | None:
        return c["phones"][0]["number"] if c.get("phones") else None

    return ServiceOut(
        id=row.id,
        org_code=row.org_code,
        organization_id=row.organization_id,
        organization_name=org.name,
        name=row.name,
        alternate_name=row.alternate_name,
        description=row.description,
        url=row.url,
        email=row.email,
        status=domain.ServiceStatus(row.status),
        lifecycle=row.lifecycle,
        category=domain.Category(row.category),
        conditions=[domain.Condition(c) for c in row.conditions],
        self_referral=row.self_referral,
        delivery_modes=[domain.DeliveryMode(m) for m in row.delivery_modes],
        communication_support=[domain.CommunicationSupport(s) for s in row.communication_support],
        waiting_weeks=row.waiting_weeks,
        how_to_refer=row.application_process,
        eligibility_description=row.eligibility_description,
        minimum_age=row.minimum_age,
        maximum_age=row.maximum_age,
        fees_description=row.fees_description,
        free_of_charge=row.free_of_charge,
        alert=row.alert,
        cost_options=[
            CostOptionOut(
                id=c["id"],
                option=c.get("option"),
                amount=c.get("amount"),
                amount_description=c.get("amount_description"),
            )
            for c in row.cost_options
        ],
        languages=[
            LanguageOut(id=lang["id"], name=lang.get("name"), code=lang.get("code"))
            for lang in row.languages
        ],
        contacts=[
            ContactOut(
                id=c["id"],
                name=c.get("name"),
                title=c.get("title"),
                email=c.get("email"),
                phone=phone(c),
            )
            for c in row.contacts
        ],
        locations=[location_out(loc) for loc in locations],
        schedules=[
            ScheduleOut(
                id=s["id"],
                byday=[d.value for d in domain.parse_byday(s.get("byday"))],
                opens_at=s.get("opens_at"),
                closes_at=s.get("closes_at"),
                description=s.get("description"),
                valid_from=s.get("valid_from"),
                valid_to=s.get("valid_to"),
            )
            for s in row.schedules
        ],
        service_areas=[
            ServiceAreaOut(id=a["id"], name=a.get("name"), description=a.get("description"))
            for a in row.service_areas
        ],
        withdrawal_reason=row.withdrawal_reason,  # type: ignore[arg-type]
        withdrawal_note=row.withdrawal_note,
        published_at=row.published_at,
        withdrawn_at=row.withdrawn_at,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
