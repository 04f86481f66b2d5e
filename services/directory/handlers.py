"""Use cases of the directory service: one per command, plus the read models the API serves.

The caller's unit of work owns the transaction: a change, its audit entry and its event (if
the service is published) commit together. Every service is stored as an Open Referral UK
record; whichever way it arrives (Waymark's API or an ORUK import) it is saved by `_save`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory import domain, search
from services.directory.domain import Lifecycle, WaymarkFacts
from services.directory.events import service_published, service_updated, service_withdrawn
from services.directory.models import Location, Organization, Service, Taxonomy, TaxonomyTerm
from services.directory.oruk import mapping, taxonomies
from services.directory.oruk.schemas import (
    ODS_IDENTIFIER_TYPE,
    ImportRejection,
    ImportReport,
    OrukLocation,
    OrukService,
    OrukServiceAtLocation,
    OrukServiceSummary,
)
from services.directory.repository import DirectoryRepository
from services.directory.schemas import (
    LocationOut,
    OrganizationIn,
    SearchHit,
    SearchOrigin,
    SearchPage,
    ServiceCreate,
    ServiceUpdate,
    WithdrawIn,
)
from services.directory.search import Origin, SearchQuery
from shared.access import Capability, may_use, organisation_relationships, permits, roles_phrase
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
    WaymarkError,
)
from shared.events.envelope import CloudEvent
from shared.outbox import add_event
from shared.settings import Settings
from shared.topics import DIRECTORY

logger = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


# --- who may change what ----------------------------------------------------------------------


def may_manage(p: Principal, *, org_code: str, org_ics: str) -> bool:
    """Service staff and administrators manage their own organisation's entries (the role
    table)."""
    return permits(
        p,
        Capability.DIRECTORY_MANAGE,
        organisation_relationships(p, owner_org=org_code, owner_ics=org_ics),
    )


def _require_manage(p: Principal, *, org_code: str, org_ics: str) -> None:
    if not may_manage(p, org_code=org_code, org_ics=org_ics):
        raise Forbidden(
            f"only {org_code}'s own service staff or administrators may change "
            "its directory entries"
        )


def _check_version(service: Service, if_match: int | None) -> None:
    if if_match is not None and if_match != service.version:
        raise PreconditionFailed(
            f"the service is at version {service.version}, not {if_match}; "
            "read it again and re-apply your change",
            current_version=service.version,
        )


# --- organisations ----------------------------------------------------------------------------


async def register_organization(
    *,
    session: AsyncSession,
    principal: Principal,
    org_code: str,
    cmd: OrganizationIn,
    client_ip: str | None = None,
) -> tuple[Organization, bool]:
    """Create or update an organisation's directory entry; True when it was created."""
    repo = DirectoryRepository(session)
    org = await repo.organization_by_code(org_code, for_update=True)
    _require_manage(principal, org_code=org_code, org_ics=org.ics if org else principal.ics)
    now = _now()
    if org is None:
        org = Organization(
            id=domain.organization_id_for(org_code),
            org_code=org_code,
            ics=principal.ics,
            name=cmd.name,
            description=cmd.description,
            email=cmd.email,
            website=cmd.website,
            identifiers=[
                {
                    "id": domain.organization_id_for(f"ods/{org_code}"),
                    "identifier_scheme": "ODS",
                    "identifier_type": ODS_IDENTIFIER_TYPE,
                    "identifier": org_code,
                }
            ],
            version=1,
            created_at=now,
            updated_at=now,
        )
        repo.add(org)
        created = True
    else:
        changed = (org.name, org.description, org.email, org.website) != (
            cmd.name,
            cmd.description,
            cmd.email,
            cmd.website,
        )
        if changed:
            org.name, org.description = cmd.name, cmd.description
            org.email, org.website = cmd.email, cmd.website
            org.version += 1
            org.updated_at = now
        created = False
    record_audit(
        session,
        principal=principal,
        action="create" if created else "update",
        resource_type="Organization",
        resource_id=org.id,
        client_ip=client_ip,
    )
    return org, created


async def get_organization(*, session: AsyncSession, org_code: str) -> Organization:
    org = await DirectoryRepository(session).organization_by_code(org_code)
    if org is None:
        raise NotFound(f"no organisation {org_code} in the directory")
    return org


# --- saving a service (both ways in) ----------------------------------------------------------


def _postcode_of(loc: OrukLocation) -> str | None:
    for address in loc.addresses:
        if address.postal_code and domain.is_postcode(address.postal_code):
            return domain.normalise_postcode(address.postal_code)
    return None


def _facts(record: OrukService) -> WaymarkFacts:
    return taxonomies.facts_from_attributes(
        taxonomies.AttributeLink(a.id, a.taxonomy_term_id, a.value, a.link_type)
        for a in record.attributes
    )


def _publish_check(record: OrukService, facts: WaymarkFacts) -> domain.PublishCheck:
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


async def _save(
    *,
    repo: DirectoryRepository,
    record: OrukService,
    org: Organization,
    principal: Principal,
    existing: Service | None,
    lifecycle: Lifecycle,
) -> Service:
    facts = _facts(record)
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


def _stage(session: AsyncSession, settings: Settings, event: CloudEvent) -> None:
    add_event(session, topic=settings.topic(DIRECTORY), event=event)


# --- commands ---------------------------------------------------------------------------------


async def create_service(
    *, session: AsyncSession, principal: Principal, cmd: ServiceCreate, client_ip: str | None = None
) -> Service:
    """A new draft service of the caller's organisation (or, for an admin, the one named)."""
    repo = DirectoryRepository(session)
    org_code = cmd.org_code or principal.org
    org = await repo.organization_by_code(org_code)
    _require_manage(principal, org_code=org_code, org_ics=org.ics if org else principal.ics)
    if org is None:
        raise ValidationFailed(
            f"organisation {org_code} is not in the directory yet; register "
            f"it first (PUT /organizations/{org_code})"
        )
    service_id = cmd.id or domain.new_id()
    if await repo.service(service_id) is not None:
        raise Conflict(f"a service with id {service_id} already exists; choose another id")
    geocode = await repo.postcodes(
        [loc.postcode for loc in cmd.locations if loc.postcode and loc.latitude is None]
    )
    record = mapping.from_create(cmd, service_id=service_id, org=org, geocode=geocode)
    service = await _save(
        repo=repo,
        record=record,
        org=org,
        principal=principal,
        existing=None,
        lifecycle=Lifecycle.DRAFT,
    )
    record_audit(
        session,
        principal=principal,
        action="create",
        resource_type="Service",
        resource_id=service.id,
        client_ip=client_ip,
    )
    return service


async def _service_to_change(
    repo: DirectoryRepository, principal: Principal, service_id: str, if_match: int | None
) -> Service:
    service = await repo.service(service_id, for_update=True)
    if service is None:
        raise NotFound(f"no service {service_id} in the directory")
    org = await repo.organization(service.organization_id)
    assert org is not None  # foreign key
    if not may_manage(principal, org_code=org.org_code, org_ics=org.ics):
        if service.lifecycle == Lifecycle.DRAFT:
            raise NotFound(f"no service {service_id} in the directory")
        _require_manage(principal, org_code=org.org_code, org_ics=org.ics)
    _check_version(service, if_match)
    return service


async def update_service(
    *,
    session: AsyncSession,
    principal: Principal,
    service_id: str,
    cmd: ServiceUpdate,
    settings: Settings,
    if_match: int | None = None,
    client_ip: str | None = None,
) -> Service:
    repo = DirectoryRepository(session)
    service = await _service_to_change(repo, principal, service_id, if_match)
    org = await repo.organization(service.organization_id)
    assert org is not None
    current = await load_record(repo, service, with_organization=False)
    facts = _facts(current)
    geocode = await repo.postcodes(
        [loc.postcode for loc in cmd.locations or [] if loc.postcode and loc.latitude is None]
    )
    record = mapping.apply_update(current, facts, cmd, geocode=geocode)
    lifecycle = Lifecycle(service.lifecycle)
    if lifecycle is Lifecycle.PUBLISHED:
        # a published service must stay one professionals can act on
        domain.check_publishable(_publish_check(record, _facts(record)))
    service = await _save(
        repo=repo,
        record=record,
        org=org,
        principal=principal,
        existing=service,
        lifecycle=lifecycle,
    )
    if lifecycle is Lifecycle.PUBLISHED:
        _stage(session, settings, service_updated(service))
    record_audit(
        session,
        principal=principal,
        action="update",
        resource_type="Service",
        resource_id=service.id,
        client_ip=client_ip,
        detail=",".join(sorted(cmd.model_fields_set)),
    )
    return service


async def publish_service(
    *,
    session: AsyncSession,
    principal: Principal,
    service_id: str,
    settings: Settings,
    if_match: int | None = None,
    client_ip: str | None = None,
) -> Service:
    repo = DirectoryRepository(session)
    service = await _service_to_change(repo, principal, service_id, if_match)
    target = domain.next_lifecycle(Lifecycle(service.lifecycle), "publish")
    record = await load_record(repo, service, with_organization=False)
    domain.check_publishable(_publish_check(record, _facts(record)))
    if service.status not in domain.SEARCHABLE_STATUSES:
        raise ValidationFailed(
            f"a service whose status is {service.status!r} cannot be "
            "published; set its status to active (or temporarily closed)"
        )
    now = _now()
    service.lifecycle = target.value
    service.published_at = now
    service.withdrawn_at = service.withdrawal_reason = service.withdrawal_note = None
    service.version += 1
    service.updated_at = now
    _stage(session, settings, service_published(service))
    record_audit(
        session,
        principal=principal,
        action="publish",
        resource_type="Service",
        resource_id=service.id,
        client_ip=client_ip,
    )
    return service


async def withdraw_service(
    *,
    session: AsyncSession,
    principal: Principal,
    service_id: str,
    cmd: WithdrawIn,
    settings: Settings,
    if_match: int | None = None,
    client_ip: str | None = None,
) -> Service:
    """Take a service out of the directory; referrals hears of it through the event."""
    repo = DirectoryRepository(session)
    service = await _service_to_change(repo, principal, service_id, if_match)
    target = domain.next_lifecycle(Lifecycle(service.lifecycle), "withdraw")
    now = _now()
    service.lifecycle = target.value
    service.withdrawn_at = now
    service.withdrawal_reason = cmd.reason.value
    service.withdrawal_note = cmd.note
    service.version += 1
    service.updated_at = now
    _stage(session, settings, service_withdrawn(service, reason=cmd.reason.value))
    record_audit(
        session,
        principal=principal,
        action="withdraw",
        resource_type="Service",
        resource_id=service.id,
        client_ip=client_ip,
        detail=cmd.reason.value,
    )
    return service


# --- the ORUK importer ------------------------------------------------------------------------


def _reasons(exc: ValidationError) -> list[str]:
    out = []
    for e in exc.errors()[:20]:
        where = ".".join(str(p) for p in e.get("loc", ()))
        out.append(f"{where}: {e.get('msg', '')}" if where else str(e.get("msg", "")))
    return out


@dataclass
class _Outcome:
    kind: str  # created | updated | unchanged


async def _import_one(
    *,
    session: AsyncSession,
    repo: DirectoryRepository,
    principal: Principal,
    record: OrukService,
    settings: Settings,
    client_ip: str | None,
) -> _Outcome:
    source_org = record.organization
    if source_org is None:
        raise ValidationFailed(
            "organization is required: Waymark needs the provider organisation and its ODS code"
        )
    code = source_org.ods_code()
    if (
        code is None
        or not domain.is_record_id(code)
        or len(code) > 20
        or not all(ch.isalnum() or ch == "-" for ch in code)
    ):
        raise ValidationFailed(
            "organization.organization_identifiers needs the provider's "
            f"ODS code (identifier_type {ODS_IDENTIFIER_TYPE!r}): letters, "
            "digits and '-', at most 20"
        )
    org = await repo.organization_by_code(code, for_update=True)
    _require_manage(principal, org_code=code, org_ics=org.ics if org else principal.ics)
    if org is not None and org.id != source_org.id:
        raise ValidationFailed(
            f"organisation {code} is in the directory with id {org.id}, not {source_org.id}"
        )
    now = _now()
    identifiers = [
        i.model_dump(mode="json", exclude_none=True) for i in source_org.organization_identifiers
    ]
    if org is None:
        if await repo.organization(source_org.id) is not None:
            raise ValidationFailed(
                f"organization id {source_org.id} belongs to another organisation code"
            )
        org = Organization(
            id=source_org.id,
            org_code=code,
            ics=principal.ics,
            name=source_org.name,
            description=source_org.description,
            email=source_org.email,
            website=source_org.website,
            logo=source_org.logo,
            uri=source_org.uri,
            identifiers=identifiers,
            version=1,
            created_at=now,
            updated_at=now,
        )
        repo.add(org)
        await session.flush()
    else:
        values = dict(
            name=source_org.name,
            description=source_org.description,
            email=source_org.email,
            website=source_org.website,
            logo=source_org.logo,
            uri=source_org.uri,
            identifiers=identifiers,
        )
        if any(getattr(org, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(org, k, v)
            org.version += 1
            org.updated_at = now
    existing = await repo.service(record.id, for_update=True)
    if existing is not None and existing.organization_id != org.id:
        raise ValidationFailed(f"service {record.id} belongs to another organisation")
    facts = _facts(record)
    domain.check_publishable(_publish_check(record, facts))
    if record.status not in domain.SEARCHABLE_STATUSES and (
        existing is None or existing.lifecycle != Lifecycle.PUBLISHED
    ):
        raise ValidationFailed(
            f"a service whose status is {record.status.value!r} is not "
            "listed; only active or temporarily closed services import"
        )
    was_published = existing is not None and existing.lifecycle == Lifecycle.PUBLISHED
    if existing is not None and was_published:
        before = await load_record(repo, existing, with_organization=False)
        if mapping.fingerprint(before) == mapping.fingerprint(record):
            return _Outcome("unchanged")
    service = await _save(
        repo=repo,
        record=record,
        org=org,
        principal=principal,
        existing=existing,
        lifecycle=Lifecycle.PUBLISHED,
    )
    if not was_published:
        service.published_at = now
        service.withdrawn_at = service.withdrawal_reason = service.withdrawal_note = None
    _stage(
        session, settings, service_updated(service) if was_published else service_published(service)
    )
    record_audit(
        session,
        principal=principal,
        action="import",
        resource_type="Service",
        resource_id=service.id,
        client_ip=client_ip,
    )
    return _Outcome("created" if existing is None else "updated")


async def import_oruk(
    *,
    session: AsyncSession,
    principal: Principal,
    records: Sequence[Any],
    settings: Settings,
    client_ip: str | None = None,
) -> ImportReport:
    """Validate each record; upsert and publish the valid ones, each all-or-nothing in its
    own savepoint; report every invalid one with its reasons."""
    if not may_use(principal, Capability.DIRECTORY_MANAGE):
        raise Forbidden(
            f"importing into the directory needs one of the roles: "
            f"{roles_phrase(Capability.DIRECTORY_MANAGE)}"
        )
    repo = DirectoryRepository(session)
    report = ImportReport(received=len(records), created=[], updated=[], unchanged=[], rejected=[])
    seen: set[str] = set()
    for index, raw in enumerate(records):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        shown_id = raw_id[:64] if isinstance(raw_id, str) else None
        try:
            record = OrukService.model_validate(raw)
        except ValidationError as exc:
            report.rejected.append(ImportRejection(index=index, id=shown_id, reasons=_reasons(exc)))
            continue
        except WaymarkError as exc:  # domain checks run inside the model validators
            report.rejected.append(ImportRejection(index=index, id=shown_id, reasons=[exc.message]))
            continue
        if record.id in seen:
            report.rejected.append(
                ImportRejection(
                    index=index,
                    id=record.id,
                    reasons=["the same service appears twice in this import; send it once"],
                )
            )
            continue
        seen.add(record.id)
        try:
            async with session.begin_nested():
                outcome = await _import_one(
                    session=session,
                    repo=repo,
                    principal=principal,
                    record=record,
                    settings=settings,
                    client_ip=client_ip,
                )
        except WaymarkError as exc:
            session.expunge_all()  # nothing of the rolled-back record stays in memory
            report.rejected.append(
                ImportRejection(index=index, id=record.id, reasons=[exc.message])
            )
            continue
        except (IntegrityError, DBAPIError) as exc:
            session.expunge_all()
            logger.info(
                "import: record %s refused by the database: %s",
                record.id,
                exc.orig.__class__.__name__ if exc.orig else exc,
            )
            report.rejected.append(
                ImportRejection(
                    index=index,
                    id=record.id,
                    reasons=[
                        "the record conflicts with another record in the directory (an id "
                        "of one of its parts is already used elsewhere)"
                    ],
                )
            )
            continue
        getattr(report, outcome.kind).append(record.id)
    return report


# --- reads ------------------------------------------------------------------------------------


async def get_service(
    *, session: AsyncSession, principal: Principal, service_id: str
) -> tuple[Service, Organization, list[Location]]:
    """A service in Waymark's shape. Drafts are visible only to those who may manage them."""
    repo = DirectoryRepository(session)
    service = await repo.service(service_id)
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
    row = await DirectoryRepository(session).postcode(normalised)
    if row is None:
        raise ValidationFailed(
            f"postcode {normalised} is well-formed but not in the "
            "directory's postcode table for this area"
        )
    return Origin(row.latitude, row.longitude, normalised)


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
