"""The identifiers other systems use for a directory service (an e-RS service id, the ICS's
shared care record's HealthcareService identifier): who may set them, reading them, and
finding the service one names. A system + value names at most one service.

The referrals service maps a standard ServiceRequest's service code to a directory service
with `find` (GET /service-identifiers), reading with its own credential.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import delete, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.directory.access import require_manage
from services.directory.domain import Lifecycle
from services.directory.models import Service, ServiceIdentifier
from services.directory.queries import get_service
from services.directory.repository import DirectoryRepository
from shared.audit import record_audit
from shared.auth import Principal
from shared.errors import Conflict

System = Annotated[
    str, StringConstraints(min_length=8, max_length=200, pattern=r"^(https?|urn):[!-~]+$")
]
Value = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
]


class IdentifierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    system: System = Field(
        description="the namespace, a URI (e.g. https://fhir.nhs.uk/Id/ers-service)"
    )
    value: Value = Field(examples=["1234567"])


class IdentifiersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identifiers: list[IdentifierIn] = Field(max_length=20)

    @field_validator("identifiers")
    @classmethod
    def _unique(cls, v: list[IdentifierIn]) -> list[IdentifierIn]:
        if len({(i.system, i.value) for i in v}) != len(v):
            raise ValueError("each system + value may appear once")
        return v


class IdentifiersOut(BaseModel):
    service_id: str
    identifiers: list[IdentifierIn]


class IdentifiedService(BaseModel):
    system: str
    value: str
    service_id: str
    org_code: str
    category: str
    status: str


async def _of(session: AsyncSession, service_id: str) -> list[IdentifierIn]:
    rows = await session.exec(
        select(ServiceIdentifier)  # type: ignore[call-overload]
        .where(col(ServiceIdentifier.service_id) == service_id)
        .order_by(ServiceIdentifier.system, ServiceIdentifier.value)
    )
    return [IdentifierIn(system=r.system, value=r.value) for r in rows.scalars().all()]


async def read_identifiers(
    *, session: AsyncSession, principal: Principal, service_id: str
) -> IdentifiersOut:
    """A service's identifiers: anyone who may see the service (drafts: its managers)."""
    await get_service(session=session, principal=principal, service_id=service_id)
    return IdentifiersOut(service_id=service_id, identifiers=await _of(session, service_id))


async def set_identifiers(
    *,
    session: AsyncSession,
    principal: Principal,
    service_id: str,
    cmd: IdentifiersIn,
    client_ip: str | None = None,
) -> IdentifiersOut:
    """Replace a service's identifiers (its organisation's service staff or administrators);
    one another service already holds is a 409 naming it."""
    service, org, _ = await get_service(session=session, principal=principal, service_id=service_id)
    require_manage(principal, org_code=org.org_code, org_ics=org.ics)
    await DirectoryRepository(session).service(service_id, for_update=True)
    for ident in cmd.identifiers:
        holder = await session.get(ServiceIdentifier, (ident.system, ident.value))
        if holder is not None and holder.service_id != service_id:
            raise Conflict(
                f"{ident.system}|{ident.value} already names service {holder.service_id}; "
                "an identifier names one service",
                service_id=holder.service_id,
            )
    await session.exec(  # type: ignore[call-overload]
        delete(ServiceIdentifier).where(ServiceIdentifier.service_id == service_id)  # type: ignore[arg-type]
    )
    await session.flush()
    for ident in cmd.identifiers:
        session.add(
            ServiceIdentifier(system=ident.system, value=ident.value, service_id=service.id)
        )
    record_audit(
        session,
        principal=principal,
        action="update",
        resource_type="ServiceIdentifiers",
        resource_id=service.id,
        client_ip=client_ip,
        detail=f"{len(cmd.identifiers)} identifier(s)",
    )
    return IdentifiersOut(service_id=service.id, identifiers=cmd.identifiers)


async def find(*, session: AsyncSession, system: str, value: str) -> list[IdentifiedService]:
    """The published service an identifier names (none, or one)."""
    rows = await session.exec(
        select(ServiceIdentifier, Service)  # type: ignore[call-overload]
        .join(Service, Service.id == ServiceIdentifier.service_id)  # type: ignore[arg-type]
        .where(
            col(ServiceIdentifier.system) == system,
            col(ServiceIdentifier.value) == value,
            col(Service.lifecycle) != Lifecycle.DRAFT.value,
        )
    )
    return [
        IdentifiedService(
            system=i.system,
            value=i.value,
            service_id=s.id,
            org_code=s.org_code,
            category=s.category,
            status=s.status,
        )
        for i, s in rows.all()
    ]
