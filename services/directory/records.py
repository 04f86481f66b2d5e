"""Saving and loading a service, whichever way it arrives (Waymark's API or an ORUK import).

Every service is stored as an Open Referral UK record: `save_record` writes one (its
locations, links, attributes, imported taxonomy terms and the derived search columns) in the
caller's unit of work; `load_record` reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory import domain
from services.directory.domain import Lifecycle, WaymarkFacts
from services.directory.models import Location, Organization, Service, Taxonomy, TaxonomyTerm
from services.directory.oruk import mapping, taxonomies
from services.directory.oruk.schemas import OrukLocation, OrukService
from services.directory.repository import DirectoryRepository
from shared.auth import Principal
from shared.errors import Conflict, ValidationFailed
from shared.events.envelope import CloudEvent
from shared.outbox import add_event
from shared.settings import Settings
from shared.topics import DIRECTORY


def _now() -> datetime:
    return datetime.now(UTC)


def _postcode_of(loc: OrukLocation) -> str | None:
    for address in loc.addresses:
        if address.postal_code and domain.is_postcode(address.postal_code):
            return domain.normalise_postcode(address.postal_code)
    return None


def facts_of(record: OrukService) -> WaymarkFacts:
    return taxonomies.facts_from_attributes(
        taxonomies.AttributeLink(a.id, a.taxonomy_term_id, a.value, a.link_type)
        for a in record.attributes
    )


def publish_check(record: OrukService, facts: WaymarkFacts) -> domain.PublishCheck:
    physical = [sal.location for sal in record.service_at_locations if sal.location.is_physical]
    return domain.PublishCheck(
        facts=facts,
        how_to_refer=record.application_process,
        physical_locations_with_coordinates=sum(1 for x in physical if x.latitude is not None),
        physical_locations_without_coordinates=sum(1 for x in physical if x.latitude is None),
        minimum_age=record.minimum_age,
        maximum_age=record.maximum_age,
    )


def _openings(record: OrukService) -> str:
    today = _now().date()
    openings = [
        domain.Opening(
            days=tuple(domain.parse_byday(s.byday)),
            opens_at=domain.parse_clock(s.opens_at),
            closes_at=domain.parse_clock(s.closes_at),
            weekly=s.freq in (None, "WEEKLY") and (s.interval or 1) == 1,
        )
        for s in record.schedules
        if (s.valid_from is None or s.valid_from <= today)
        and (s.valid_to is None or s.valid_to >= today)
    ]
    return domain.multirange_literal(domain.opening_ranges(openings))


async def _save_terms(repo: DirectoryRepository, record: OrukService) -> None:
    """Terms of other taxonomies arrive embedded in the attributes (ORUK); keep them. Waymark's
    own terms are never overwritten by a feed."""
    for a in record.attributes:
        if taxonomies.is_waymark_term(a.taxonomy_term_id):
            continue
        t = a.taxonomy_term
        existing = await repo.term(a.taxonomy_term_id)
        if t is None:
            if existing is None:
                raise ValidationFailed(
                    f"attribute {a.id} names taxonomy term "
                    f"{a.taxonomy_term_id}, which the directory does not "
                    "know; embed the term (taxonomy_term)"
                )
            continue
        if existing is not None and existing.waymark:
            continue
        if t.taxonomy_id is not None and t.taxonomy_id in taxonomies.WAYMARK_TAXONOMY_IDS:
            raise ValidationFailed(
                f"term {t.id} claims to belong to a Waymark taxonomy but is not one of its terms"
            )
        if t.taxonomy_id is not None and await repo.taxonomy(t.taxonomy_id) is None:
            detail = t.taxonomy_detail
            repo.add(
                Taxonomy(
                    id=t.taxonomy_id,
                    name=detail.name if detail else (t.taxonomy or t.taxonomy_id),
                    description=detail.description
                    if detail
                    else "A taxonomy named by an imported Open Referral UK feed.",
                    uri=detail.uri if detail else None,
                    version=detail.version if detail else None,
                )
            )
            await repo.session.flush()
        values = dict(
            code=t.code,
            name=t.name,
            description=t.description,
            parent_id=t.parent_id,
            taxonomy=t.taxonomy,
            taxonomy_id=t.taxonomy_id,
            language=t.language,
            term_uri=t.term_uri,
        )
        if existing is None:
            repo.add(TaxonomyTerm(id=t.id, **values))
        else:
            for k, v in values.items():
                setattr(existing, k, v)


async def _check_ownership(
    repo: DirectoryRepository, record: OrukService, org: Organization
) -> None:
    """Ids are global: a record may not take over another service's or organisation's."""
    for sal in record.service_at_locations:
        loc = await repo.location(sal.location.id)
        if loc is not None and loc.organization_id != org.id:
            raise Conflict(f"location {loc.id} belongs to another organisation")
    for sal_id, owner in (
        await repo.link_owners([s.id for s in record.service_at_locations])
    ).items():
        if owner != record.id:
            raise Conflict(f"service_at_location {sal_id} belongs to another service")
    for attr_id, owner in (await repo.attribute_owners([a.id for a in record.attributes])).items():
        if owner != record.id:
            raise Conflict(f"attribute {attr_id} belongs to another service")


async def save_record(
    *,
    repo: DirectoryRepository,
    record: OrukService,
    org: Organization,
    principal: Principal,
    existing: Service | None,
    lifecycle: Lifecycle,
) -> Service:
    facts = facts_of(record)
    await _check_ownership(repo, record, org)
    await _save_terms(repo, record)
    for sal in record.service_at_locations:
        loc = sal.location
        values = dict(
            organization_id=org.id,
            location_type=loc.location_type,
            name=loc.name,
            alternate_name=loc.alternate_name,
            description=loc.description,
            url=loc.url,
            transportation=loc.transportation,
            latitude=loc.latitude,
            longitude=loc.longitude,
            external_identifier=loc.external_identifier,
            external_identifier_type=loc.external_identifier_type,
            postcode=_postcode_of(loc),
            addresses=[a.model_dump(mode="json", exclude_none=True) for a in loc.addresses],
            accessibility=[a.model_dump(mode="json", exclude_none=True) for a in loc.accessibility],
        )
        row = await repo.location(loc.id)
        if row is None:
            repo.add(Location(id=loc.id, **values))
        else:
            for k, v in values.items():
                setattr(row, k, v)

    def dump(items: Sequence[Any]) -> list[dict[str, Any]]:
        return [i.model_dump(mode="json", exclude_none=True) for i in items]

    now = _now()
    values = dict(
        organization_id=org.id,
        org_code=org.org_code,
        name=record.name,
        alternate_name=record.alternate_name,
        description=record.description or "",
        url=record.url,
        email=record.email,
        status=record.status.value,
        interpretation_services=record.interpretation_services,
        application_process=record.application_process,
        fees_description=record.fees_description,
        accreditations=record.accreditations,
        eligibility_description=record.eligibility_description,
        minimum_age=record.minimum_age,
        maximum_age=record.maximum_age,
        assured_date=record.assured_date,
        assurer_email=record.assurer_email,
        alert=record.alert,
        phones=dump(record.phones),
        contacts=dump(record.contacts),
        schedules=dump(record.schedules),
        service_areas=dump(record.service_areas),
        cost_options=dump(record.cost_options),
        languages=dump(record.languages),
        funding=dump(record.funding),
        category=facts.category.value,
        conditions=[c.value for c in facts.conditions],
        delivery_modes=[m.value for m in facts.delivery_modes],
        communication_support=[s.value for s in facts.communication_support],
        self_referral=facts.self_referral,
        waiting_weeks=facts.waiting_weeks,
        remote=facts.remote,
        free_of_charge=domain.free_of_charge(c.amount for c in record.cost_options),
        lifecycle=lifecycle.value,
        updated_at=now,
    )
    if existing is None:
        service = Service(
            id=record.id, version=1, created_by=principal.identity, created_at=now, **values
        )
        repo.add(service)
    else:
        service = existing
        for k, v in values.items():
            setattr(service, k, v)
        service.version += 1
    await repo.session.flush()
    await repo.replace_links(
        record.id,
        [(sal.id, sal.location.id, sal.description) for sal in record.service_at_locations],
    )
    await repo.replace_attributes(
        record.id, [(a.id, a.taxonomy_term_id, a.link_type, a.value) for a in record.attributes]
    )
    await repo.refresh_derived(record.id, _openings(record))
    return service


async def load_record(
    repo: DirectoryRepository, service: Service, *, with_organization: bool = True
) -> OrukService:
    org = await repo.organization(service.organization_id) if with_organization else None
    return mapping.service_to_oruk(
        service,
        org=org,
        links=await repo.links(service.id),
        attributes=await repo.attributes(service.id),
    )


def stage_event(session: AsyncSession, settings: Settings, event: CloudEvent) -> None:
    add_event(session, topic=settings.topic(DIRECTORY), event=event)
