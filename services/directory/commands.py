"""The directory's commands: register an organisation; create, update, publish and withdraw a
service. One use case each.

The caller's unit of work owns the transaction: a change, its audit entry and its event (if
the service is published) commit together. Services are saved as ORUK records by
`records.save_record`, the same way the importer (`oruk/importer.py`) saves them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory import domain
from services.directory.access import may_manage, require_manage
from services.directory.domain import Lifecycle
from services.directory.events import service_published, service_updated, service_withdrawn
from services.directory.models import Organization, Service
from services.directory.oruk import mapping
from services.directory.oruk.schemas import ODS_IDENTIFIER_TYPE
from services.directory.records import (
    facts_of,
    load_record,
    publish_check,
    save_record,
    stage_event,
)
from services.directory.repository import DirectoryRepository
from services.directory.schemas import OrganizationIn, ServiceCreate, ServiceUpdate, WithdrawIn
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from shared.settings import Settings


def _now() -> datetime:
    return datetime.now(UTC)


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
    require_manage(principal, org_code=org_code, org_ics=org.ics if org else principal.ics)
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


async def create_service(
    *, session: AsyncSession, principal: Principal, cmd: ServiceCreate, client_ip: str | None = None
) -> Service:
    """A new draft service of the caller's organisation (or, for an admin, the one named)."""
    repo = DirectoryRepository(session)
    org_code = cmd.org_code or principal.org
    org = await repo.organization_by_code(org_code)
    require_manage(principal, org_code=org_code, org_ics=org.ics if org else principal.ics)
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
    service = await save_record(
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
        require_manage(principal, org_code=org.org_code, org_ics=org.ics)
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
    facts = facts_of(current)
    geocode = await repo.postcodes(
        [loc.postcode for loc in cmd.locations or [] if loc.postcode and loc.latitude is None]
    )
    record = mapping.apply_update(current, facts, cmd, geocode=geocode)
    lifecycle = Lifecycle(service.lifecycle)
    if lifecycle is Lifecycle.PUBLISHED:
        # a published service must stay one professionals can act on
        domain.check_publishable(publish_check(record, facts_of(record)))
    service = await save_record(
        repo=repo,
        record=record,
        org=org,
        principal=principal,
        existing=service,
        lifecycle=lifecycle,
    )
    if lifecycle is Lifecycle.PUBLISHED:
        stage_event(session, settings, service_updated(service))
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
    domain.check_publishable(publish_check(record, facts_of(record)))
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
    stage_event(session, settings, service_published(service))
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
    stage_event(session, settings, service_withdrawn(service, reason=cmd.reason.value))
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
