"""The referrals service's HTTP API (routes only: parse, authorise, call a handler, render)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Header, Request, Response
from fastapi.responses import JSONResponse

from services.referrals import handlers
from services.referrals.repository import ReferralRepository
from services.referrals.schemas import ReferralCreate, ReferralOut
from shared.audit import record_audit
from shared.auth import CurrentPrincipal, Principal, Role
from shared.errors import Forbidden, NotFound
from shared.web import (
    IDEMPOTENCY_HEADER,
    SessionDep,
    create_app,
    remember,
    replay_or_none,
    request_fingerprint,
)

app = create_app("referrals", title="Waymark referrals",
                 description="Closed-loop referrals between GP, pain, talking therapies, "
                             "physiotherapy and community services.")

PROBLEM = {"model": None, "content": {"application/problem+json": {}}}
ERRORS = {s: {"description": d, **PROBLEM} for s, d in
          [(401, "Not authenticated"), (403, "Forbidden"), (404, "Not found"),
           (409, "Conflict"), (422, "Invalid request")]}


def _may_create(p: Principal) -> None:
    if not p.has(Role.CLINICIAN, Role.SERVICE_STAFF):
        raise Forbidden("only clinicians and service staff of a referring organisation "
                        "may create referrals")


def _may_read(p: Principal, *, from_org: str, to_org: str, ics: str) -> bool:
    if p.has(Role.COORDINATOR, Role.ADMIN):
        return p.ics == ics
    return p.org in (from_org, to_org)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _etag(version: int) -> str:
    return f'W/"{version}"'


@app.post("/referrals", status_code=201, response_model=ReferralOut, responses=ERRORS,
          tags=["referrals"])
async def create_referral(
    body: ReferralCreate, request: Request, session: SessionDep, principal: CurrentPrincipal,
    idempotency_key: Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)] = None,
) -> Response:
    """Refer a patient to a service; the referral starts in `submitted`."""
    _may_create(principal)
    fingerprint = request_fingerprint(body.model_dump(mode="json"))
    replay = await replay_or_none(session, principal, idempotency_key, fingerprint)
    if replay is not None:
        return replay
    referral = await handlers.submit_referral(
        session=session, principal=principal, cmd=body, settings=request.app.state.settings,
        client_ip=request.client.host if request.client else None)
    out = ReferralOut.model_validate(referral, from_attributes=True).model_dump(mode="json")
    headers = {"Location": f"/referrals/{referral.id}", "ETag": _etag(referral.version)}
    await remember(session, principal, idempotency_key, fingerprint, 201, out, headers)
    return JSONResponse(out, status_code=201, headers=headers)


@app.get("/referrals/{referral_id}", response_model=ReferralOut, responses=ERRORS,
         tags=["referrals"])
async def get_referral(referral_id: str, request: Request, session: SessionDep,
                       principal: CurrentPrincipal) -> Response:
    """One referral, to the referrer, the receiving service and the ICS's coordinators."""
    referral = (await ReferralRepository(session).get(referral_id)
                if _is_uuid(referral_id) else None)
    if referral is None or not _may_read(principal, from_org=referral.from_org,
                                         to_org=referral.to_org, ics=referral.ics):
        # the same answer for "absent" and "not yours", so ids cannot be probed
        raise NotFound(f"no referral {referral_id} that you may see")
    record_audit(session, principal=principal, action="read", resource_type="Referral",
                 resource_id=referral.id, patient_id=referral.patient_id,
                 client_ip=request.client.host if request.client else None)
    out = ReferralOut.model_validate(referral, from_attributes=True).model_dump(mode="json")
    return JSONResponse(out, headers={"ETag": _etag(referral.version)})
