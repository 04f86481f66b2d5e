"""The integration service's HTTP API (routes only): operations on the door for the EHRs, that
is the registered source systems, their status and their dead letters. The channels are
services/integration/hl7 (MLLP listener, its own process) and services/integration/fhir."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.integration import handlers, repository
from services.integration.fhir import api as fhir_api
from services.integration.fhir import capability as fhir_capability

# registers the HL7 v2 re-drive (REDRIVERS['hl7v2']) for POST /dead-letters/{id}/redrive
from services.integration.hl7 import handlers as hl7_handlers  # noqa: F401

# registers the bulk extracts' re-drive (REDRIVERS['bulk'])
from services.integration.importer import redrive as bulk_redrive  # noqa: F401
from services.integration.models import SourceSystem
from services.integration.schemas import (
    DeadLetterOut,
    RedriveOut,
    SourceIn,
    SourceOut,
    SourceStatus,
    StatusOut,
)
from shared.access import Capability, Principal, Relationship, permits
from shared.audit import record_audit
from shared.auth import CurrentPrincipal
from shared.errors import Conflict, Forbidden, NotFound
from shared.fhir import operation_outcome
from shared.fhir_rest import fhir_openapi
from shared.settings import Settings
from shared.web import PROBLEM_RESPONSES, SessionDep, client_ip, create_app

# every operation may answer with a problem: documented, so clients generated from the OpenAPI
# know them (tests/standards)
router = APIRouter(responses=PROBLEM_RESPONSES)


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _manager(principal: Principal, settings: Settings) -> Principal:
    """Sources and dead letters are the deployment ICS's own, not a person's data: an admin of
    that ICS looks after them."""
    same_ics = [Relationship.SAME_ICS] if principal.ics == settings.ics else []
    if not permits(principal, Capability.INTEGRATION_MANAGE, same_ics):
        raise Forbidden("looking after the integration needs the admin role of this ICS")
    return principal


@router.get("/sources", tags=["sources"])
async def list_sources(
    request: Request, session: SessionDep, principal: CurrentPrincipal
) -> list[SourceOut]:
    """The systems registered to send to Waymark."""
    _manager(principal, _settings(request))
    return [
        SourceOut.model_validate(s, from_attributes=True) for s in await repository.sources(session)
    ]


@router.put("/sources/{source_id}", tags=["sources"])
async def register_source(
    source_id: str,
    body: SourceIn,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> SourceOut:
    """Register a source system, or change one (switch it off with `active: false`)."""
    _manager(principal, _settings(request))
    if body.id != source_id:
        raise Conflict("the body's id must be the id in the path")
    if body.channel == "hl7v2" and not body.sending_facility:
        raise Conflict("an HL7 v2 source needs its sending facility (MSH-4)")
    if body.channel == "fhir" and not body.client_id:
        raise Conflict("a FHIR source needs the client id its tokens carry")
    now = datetime.now(UTC)
    row = await repository.source_by_id(session, source_id)
    if row is None:
        row = SourceSystem(id=source_id, created_at=now, name="", org_code="", channel="")
    for name, value in body.model_dump().items():
        setattr(row, name, value)
    row.updated_at = now
    session.add(row)
    await session.flush()
    record_audit(
        session,
        principal=principal,
        action="source-registered",
        resource_type="SourceSystem",
        resource_id=source_id,
        client_ip=client_ip(request),
        detail=f"{body.channel} {body.org_code} active={body.active}",
    )
    return SourceOut.model_validate(row, from_attributes=True)


@router.get("/status", tags=["operations"])
async def status(request: Request, session: SessionDep, principal: CurrentPrincipal) -> StatusOut:
    """Per source: messages received, accepted and refused, when last seen, dead letters."""
    _manager(principal, _settings(request))
    return StatusOut(
        sources=[SourceStatus(**r) for r in await repository.status_by_source(session)],
        unknown_sender_dead_letters=await repository.unknown_sender_letters(session),
    )


@router.get("/dead-letters", tags=["operations"])
async def dead_letters(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    source: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeadLetterOut]:
    """Open dead letters, oldest first: why each was refused (never its content)."""
    _manager(principal, _settings(request))
    rows = await repository.open_dead_letters(session, limit=limit, source_id=source)
    return [DeadLetterOut(**{**r.model_dump(exclude={"payload"}), "id": str(r.id)}) for r in rows]


@router.post("/dead-letters/{letter_id}/redrive", tags=["operations"])
async def redrive(
    letter_id: uuid.UUID, request: Request, principal: CurrentPrincipal
) -> RedriveOut:
    """Apply an open dead letter again through its channel (after the cause was fixed)."""
    settings = _settings(request)
    _manager(principal, settings)
    result = await handlers.redrive(
        request.app.state.sessions, settings, letter_id=letter_id, actor=principal
    )
    if result is None:
        raise NotFound("no open dead letter has that id")
    return RedriveOut(
        ack_code=result.ack_code, detail=result.detail, contacts_changed=len(result.changed)
    )


@router.post("/dead-letters/{letter_id}/discard", status_code=204, tags=["operations"])
async def discard(letter_id: uuid.UUID, request: Request, principal: CurrentPrincipal) -> None:
    """Close an open dead letter without applying it (a test message, a duplicate feed)."""
    _manager(principal, _settings(request))
    if not await handlers.discard(request.app.state.sessions, letter_id=letter_id, actor=principal):
        raise NotFound("no open dead letter has that id")


app = create_app(
    "integration",
    title="Waymark integration",
    description="The door for the EHRs an ICS runs: HL7 v2 ADT/SIU over MLLP, FHIR R4 REST and "
    "Subscription notifications, bulk history at go-live. Operations: sources, status, dead "
    "letters.",
    error_renderers={"/fhir": operation_outcome},
)
app.include_router(router)
app.include_router(fhir_capability.router)
app.include_router(fhir_api.router)
fhir_openapi(app)
