"""The directory's routes for the identifiers other systems use for a service (routes only):
set and read a service's, and find the service an identifier names."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.directory import identifiers
from services.directory.identifiers import (
    IdentifiedService,
    IdentifiersIn,
    IdentifiersOut,
    System,
    Value,
)
from services.directory.params import ERRORS, DirectoryReader, ServiceId
from shared.auth import CurrentPrincipal
from shared.web import SessionDep, client_ip

router = APIRouter()


@router.put(
    "/services/{service_id}/identifiers",
    response_model=IdentifiersOut,
    responses=ERRORS,
    tags=["services"],
)
async def put_service_identifiers(
    service_id: ServiceId,
    body: IdentifiersIn,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> IdentifiersOut:
    """Set the identifiers other systems use for this service (e.g. its e-RS service id), so
    a referral naming it that way reaches it (its organisation's staff or admins)."""
    return await identifiers.set_identifiers(
        session=session,
        principal=principal,
        service_id=service_id,
        cmd=body,
        client_ip=client_ip(request),
    )


@router.get(
    "/services/{service_id}/identifiers",
    response_model=IdentifiersOut,
    responses=ERRORS,
    tags=["services"],
)
async def get_service_identifiers(
    service_id: ServiceId, session: SessionDep, principal: DirectoryReader
) -> IdentifiersOut:
    """The identifiers other systems use for this service."""
    return await identifiers.read_identifiers(
        session=session, principal=principal, service_id=service_id
    )


@router.get(
    "/service-identifiers",
    response_model=list[IdentifiedService],
    responses=ERRORS,
    tags=["search"],
)
async def find_service_by_identifier(
    system: Annotated[System, Query()],
    value: Annotated[Value, Query()],
    session: SessionDep,
    principal: DirectoryReader,
) -> list[IdentifiedService]:
    """The published service an identifier names: an empty list, or one service."""
    return await identifiers.find(session=session, system=system, value=value)
