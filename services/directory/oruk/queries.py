"""The reads of the Open Referral UK API: published services, fully nested or one-to-one, and
where they are delivered (service_at_location)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory.domain import Lifecycle
from services.directory.models import Organization
from services.directory.oruk import mapping
from services.directory.oruk.schemas import OrukService, OrukServiceAtLocation, OrukServiceSummary
from services.directory.records import load_record
from services.directory.repository import DirectoryRepository
from shared.errors import NotFound


async def oruk_service(*, session: AsyncSession, service_id: str) -> OrukService:
    repo = DirectoryRepository(session)
    service = await repo.service(service_id)
    if service is None or service.lifecycle != Lifecycle.PUBLISHED:
        raise NotFound(f"no published service {service_id}")
    return await load_record(repo, service)


async def oruk_services(
    *, session: AsyncSession, ids: Sequence[str], full: bool
) -> list[OrukService]:
    repo = DirectoryRepository(session)
    services = await repo.services(ids)
    out = []
    orgs: dict[str, Organization | None] = {}
    for sid in ids:
        s = services[sid]
        if s.organization_id not in orgs:
            orgs[s.organization_id] = await repo.organization(s.organization_id)
        if full:
            out.append(
                mapping.service_to_oruk(
                    s,
                    org=orgs[s.organization_id],
                    links=await repo.links(s.id),
                    attributes=await repo.attributes(s.id),
                )
            )
        else:
            out.append(
                mapping.service_to_oruk(
                    s, org=orgs[s.organization_id], links=[], attributes=[]
                ).model_copy(
                    update=dict(
                        schedules=[],
                        service_areas=[],
                        languages=[],
                        cost_options=[],
                        contacts=[],
                        phones=[],
                        funding=[],
                    )
                )
            )
    return out


async def oruk_service_at_locations(
    *, session: AsyncSession, rows: Sequence[Any]
) -> list[OrukServiceAtLocation]:
    repo = DirectoryRepository(session)
    services = await repo.services(list({r["service_id"] for r in rows}))
    locations = await repo.locations(list({r["location_id"] for r in rows}))
    out = []
    for r in rows:
        s = services[r["service_id"]]
        out.append(
            OrukServiceAtLocation(
                id=r["sal_id"],
                service_id=s.id,
                location_id=r["location_id"],
                description=r["sal_description"],
                location=mapping.location_to_oruk(locations[r["location_id"]]),
                service=OrukServiceSummary(
                    id=s.id,
                    organization_id=s.organization_id,
                    name=s.name,
                    description=s.description or None,
                    url=s.url,
                    email=s.email,
                    status=s.status,
                ),  # type: ignore[arg-type]
                distance=None if r["distance_m"] is None else round(r["distance_m"], 1),
            )
        )
    return out


async def oruk_service_at_location_full(*, session: AsyncSession, row: Any) -> dict[str, Any]:
    """One service_at_location, fully nested: its location and the whole service."""
    repo = DirectoryRepository(session)
    services = await repo.services([row["service_id"]])
    locations = await repo.locations([row["location_id"]])
    service = await load_record(repo, services[row["service_id"]])
    return {
        "id": row["sal_id"],
        "service_id": row["service_id"],
        "location_id": row["location_id"],
        "description": row["sal_description"],
        "location": mapping.location_to_oruk(locations[row["location_id"]]).model_dump(
            mode="json", exclude_none=True
        ),
        "service": service.model_dump(mode="json", exclude_none=True),
    }
